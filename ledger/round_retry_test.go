package ledger

import (
	"context"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// tapLocker grants at once and passes on the catch-up messages the node
// sends that want selects, as long as got has room (a Send never blocks).
type tapLocker struct {
	want func(syncMsg) bool
	got  chan syncMsg
}

func (l *tapLocker) Lock(context.Context) (lamportmutex.Token, error) {
	return lamportmutex.Token{Clock: 1, ID: "1"}, nil
}
func (l *tapLocker) Unlock([]byte) error      { return nil }
func (l *tapLocker) Quarantine(string, error) {}
func (l *tapLocker) Send(_ string, p []byte) error {
	m, err := decodeSync(p)
	if err == nil && l.want(m) {
		select {
		case l.got <- m:
		default:
		}
	}
	return err
}

// A holder's sync round asks a peer again when its answer does not come:
// a full transport queue may have refused the answer (ErrPeerBusy), and
// nothing else would repair that while the holder waits with the mutex.
func TestSyncRoundAsksAgain(t *testing.T) {
	g := GenesisForTest([]string{"1", "2"}, 0)
	n, err := newNode(Config{ID: "1", Signer: testKey("1"), Genesis: g})
	if err != nil {
		t.Fatal(err)
	}
	l := &tapLocker{want: func(m syncMsg) bool { return m.op == opHead && m.round != 0 }, got: make(chan syncMsg, 4)}
	n.start(l)
	defer n.Close(context.Background())
	n.handlePeerUp("2") // a round is due
	done := make(chan error, 1)
	go func() {
		_, err := n.Transfer(context.Background(), "2", 1)
		done <- err
	}()
	first := <-l.got // its answer is lost
	again := <-l.got
	if again.round != first.round {
		t.Fatalf("asked again for round %d, not %d", again.round, first.round)
	}
	answer, err := encodeSync(syncMsg{op: opAnswer, genesis: g.Hash, round: again.round, height: 0, hash: g.Hash})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.handleMessage("2", answer); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
