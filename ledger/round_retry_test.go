package ledger

import (
	"context"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// questionLocker grants at once and passes on the sync round questions
// the node sends.
type questionLocker struct {
	questions chan syncMsg
}

func (l *questionLocker) Lock(context.Context) (lamportmutex.Token, error) {
	return lamportmutex.Token{Clock: 1, ID: "1"}, nil
}
func (l *questionLocker) Unlock([]byte) error      { return nil }
func (l *questionLocker) Quarantine(string, error) {}
func (l *questionLocker) Send(_ string, p []byte) error {
	m, err := decodeSync(p)
	if err == nil && m.op == opHead && m.round != 0 {
		l.questions <- m
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
	l := &questionLocker{questions: make(chan syncMsg, 4)}
	n.start(l)
	defer n.Close(context.Background())
	n.handlePeerUp("2") // a round is due
	done := make(chan error, 1)
	go func() {
		_, err := n.Transfer(context.Background(), "2", 1)
		done <- err
	}()
	first := <-l.questions // its answer is lost
	again := <-l.questions
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
