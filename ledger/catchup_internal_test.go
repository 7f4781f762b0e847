package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// busyLocker grants at once and records the catch-up messages the node
// sends; the first blocks message is refused as a full transport queue.
type busyLocker struct {
	mu      sync.Mutex
	refused bool
	sent    []string      // "op to" (and "from-to" for blocks), in order
	answer  chan struct{} // gets a value for each opAnswer sent
}

func (l *busyLocker) Lock(context.Context) (lamportmutex.Token, error) {
	return lamportmutex.Token{Clock: 1, ID: "1"}, nil
}
func (l *busyLocker) Unlock([]byte) error      { return nil }
func (l *busyLocker) Quarantine(string, error) {}
func (l *busyLocker) Send(to string, p []byte) error {
	m, err := decodeSync(p)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.op == opBlocks && !l.refused {
		l.refused = true
		return fmt.Errorf("%w: %s", lamportmutex.ErrPeerBusy, to)
	}
	if m.op == opBlocks {
		l.sent = append(l.sent, fmt.Sprintf("blocks %s %d-%d", to, m.blocks[0].Height, m.blocks[len(m.blocks)-1].Height))
	}
	if m.op == opAnswer {
		l.answer <- struct{}{}
	}
	return nil
}

// TestAnnouncementResendsRefusedBlocks checks that blocks the transport
// refused to carry are not counted as sent to the peer: its next
// announcement gets them.
func TestAnnouncementResendsRefusedBlocks(t *testing.T) {
	ids := []string{"1", "2", "3"}
	g := GenesisForTest(ids, 0)
	n, err := newNode(Config{ID: "1", Signer: testKey("1"), Genesis: g})
	if err != nil {
		t.Fatal(err)
	}
	l := &busyLocker{answer: make(chan struct{}, 1)}
	n.start(l)
	defer n.Close(context.Background())
	for range 3 {
		if _, err := n.Transfer(context.Background(), "2", 1); err != nil {
			t.Fatal(err)
		}
	}
	msg := func(m syncMsg) []byte {
		m.genesis = g.Hash
		p, err := encodeSync(m)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	head := n.Head()
	announce := msg(syncMsg{op: opHead, height: 0, hash: g.Hash})
	// Peer 2 announces its head twice; the blocks for the first are refused.
	for range 2 {
		if err := n.handleMessage("2", announce); err != nil {
			t.Fatal(err)
		}
	}
	// Peer 3's round question: its answer comes after what the node did
	// for peer 2's messages, which the catch-up goroutine handles in order.
	if err := n.handleMessage("3", msg(syncMsg{op: opHead, round: 1, height: head.Height, hash: head.Hash})); err != nil {
		t.Fatal(err)
	}
	<-l.answer
	l.mu.Lock()
	defer l.mu.Unlock()
	if want := fmt.Sprintf("blocks 2 1-%d", head.Height); len(l.sent) == 0 || l.sent[0] != want {
		t.Fatalf("sent %q after the first blocks were refused; want %q", l.sent, want)
	}
	if err := n.Err(); err != nil {
		t.Fatal(errors.Join(errors.New("the node stopped"), err))
	}
}
