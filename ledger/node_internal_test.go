package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// gateLocker reports each Lock on entered and grants it when gate closes.
type gateLocker struct {
	entered chan struct{}
	gate    chan struct{}
}

func (l *gateLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	l.entered <- struct{}{}
	<-l.gate
	return lamportmutex.Token{Clock: 1, ID: "1"}, nil
}

func (l *gateLocker) Unlock([]byte) error { return nil }

func (l *gateLocker) Send(string, []byte) error { return errNoPeers }

func (l *gateLocker) Quarantine(string, error) {}

// Concurrent calls with one ID, all provably in flight together, take the
// mutex once and apply the transfer once.
func TestSubmitSameIDInFlight(t *testing.T) {
	n := newUnstartedNode(t)
	l := &gateLocker{entered: make(chan struct{}, 100), gate: make(chan struct{})}
	n.start(l)
	const others = 15
	waiting := make(chan struct{}, others)
	n.testHookWait = func() { waiting <- struct{}{} }

	id := NewTransferID()
	results := make([]Result, others+1)
	errs := make([]error, others+1)
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		results[i], errs[i] = n.TransferWithID(context.Background(), id, "2", 4)
	}
	wg.Add(1)
	go call(0)
	<-l.entered // the first call holds the flight and is inside Lock
	for i := 1; i <= others; i++ {
		wg.Add(1)
		go call(i)
	}
	for range others {
		select {
		case <-waiting:
		case <-l.entered:
			close(l.gate)
			wg.Wait()
			t.Fatal("a second call with the same ID took the mutex")
		}
	}
	close(l.gate)
	wg.Wait()
	fresh := 0
	for i, r := range results {
		if errs[i] != nil || r.Block.Hash != results[0].Block.Hash {
			t.Fatalf("call %d: %+v, %v", i, r, errs[i])
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh != 1 || n.Head().Height != 1 {
		t.Fatalf("%d fresh results, head %d", fresh, n.Head().Height)
	}
	if b, _ := n.Balance("2"); b != 14 {
		t.Fatalf("balance of 2 is %d", b)
	}
}

// errNoPeers is what test lockers without peers answer to Send: they never
// report a PeerUp, so a node never calls it.
var errNoPeers = errors.New("test locker: no peers to send to")

// newUnstartedNode returns node 1 of a two-member ledger in memory, with
// no mutex and no goroutines yet (see Node.start). The test's cleanup
// closes it.
func newUnstartedNode(t *testing.T) *Node {
	t.Helper()
	g, err := NewGenesis([]string{"1", "2"}, DefaultInitialBalance, testPubKeys("1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := newNode(Config{ID: "1", Genesis: g, Signer: testKey("1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}
