package ledger

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
)

// testReplica returns the replica of member id of a fresh two-member
// ledger, and its store.
func testReplica(t *testing.T, g Block, id string) (*replica, *MemStore) {
	t.Helper()
	st, err := NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	chain, cp, err := loadChain(st, g, testPubKeys(id)[id], log)
	if err != nil {
		t.Fatal(err)
	}
	return newReplica(Config{ID: id, Signer: testKey(id), MaxBatch: 4}, chain, cp, st.Read, log), st
}

// lastPersist checks that the replica's queued actions end with a persist
// and returns it, with nothing of the blocks visible yet: not in the chain,
// not in a release.
func lastPersist(t *testing.T, r *replica, head uint64) action {
	t.Helper()
	acts := r.take()
	for i, a := range acts {
		switch {
		case a.kind == actPersist && i != len(acts)-1:
			t.Fatalf("actions after the persist: %+v", acts[i+1:])
		case a.kind == actRelease:
			t.Fatalf("a release before the blocks were persisted")
		case a.kind == actEmit && a.ev.Kind == EventBlockInserted:
			t.Fatalf("a block reported inserted before it was persisted")
		}
	}
	if len(acts) == 0 || acts[len(acts)-1].kind != actPersist {
		t.Fatalf("no persist at the end of %+v", acts)
	}
	if h := r.chain.Head().Height; h != head {
		t.Fatalf("the head moved to %d before the write", h)
	}
	return acts[len(acts)-1]
}

// A block is persisted before its insertion is visible anywhere: a
// replica's commit and a received release each end with the persist, and
// only its continuation inserts the blocks and releases them. A failed
// write inserts nothing: the holder releases without a payload and its
// transfer fails; a receiver stops.
func TestReplicaPersistsBeforeInserting(t *testing.T) {
	g, err := NewGenesis([]string{"1", "2"}, DefaultInitialBalance, testPubKeys("1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := testReplica(t, g, "1")
	b, _ := testReplica(t, g, "2")

	q := &request{t: Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: 3}, done: make(chan struct{})}
	a.commit([]*request{q}, 5)
	p := lastPersist(t, a, 0)
	p.then(nil)
	if a.chain.Head().Height != 1 {
		t.Fatalf("the write succeeded but the head is %d", a.chain.Head().Height)
	}
	var payload []byte
	for _, act := range a.take() {
		if act.kind == actRelease {
			payload = act.payload
			act.then(nil)
		}
	}
	if payload == nil {
		t.Fatal("no release with the block")
	}

	blocks, err := DecodeBatch(payload)
	if err != nil {
		t.Fatal(err)
	}
	var verdict error
	b.peerRelease("1", blocks, b.checkReceived("1", blocks, false), &verdict)
	lastPersist(t, b, 0).then(errors.New("disk full"))
	if verdict != nil || b.chain.Head().Height != 0 || b.failed == nil {
		t.Fatalf("a received block whose write failed: verdict %v, head %d, failed %v", verdict, b.chain.Head().Height, b.failed)
	}

	c, _ := testReplica(t, g, "2")
	c.peerRelease("1", blocks, nil, &verdict)
	lastPersist(t, c, 0).then(nil)
	if verdict != nil || c.chain.Head().Hash != blocks[0].Hash {
		t.Fatalf("verdict %v, head %d", verdict, c.chain.Head().Height)
	}

	q2 := &request{t: Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: 1}, done: make(chan struct{})}
	a.commit([]*request{q2}, 9)
	lastPersist(t, a, 1).then(errors.New("disk full"))
	if a.chain.Head().Height != 1 || a.failed != nil {
		t.Fatalf("own write failed: head %d, failed %v", a.chain.Head().Height, a.failed)
	}
	for _, act := range a.take() {
		if act.kind == actRelease {
			if act.payload != nil {
				t.Fatal("released a block whose write failed")
			}
			act.then(nil)
		}
	}
	if q2.err == nil {
		t.Fatal("the transfer whose write failed succeeded")
	}
}

// Reads go through the snapshot: they never wait for a step.
func TestNodeReadsNeverWait(t *testing.T) {
	n := newUnstartedNode(t)
	n.step.Lock() // a step that never ends: a read that waited for it would hang
	_, berr := n.Balance("2")
	_ = n.Balances()
	_ = n.Head()
	_ = n.Genesis()
	err := errors.Join(berr, n.Err(), n.WaitHeight(context.Background(), 0))
	n.step.Unlock()
	if err != nil {
		t.Fatal(err)
	}
}

// gatedReads is a store whose Reads wait at a gate once armed.
type gatedReads struct {
	Store
	armed   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func (s *gatedReads) Read(from, to uint64) ([]Block, error) {
	if s.armed.Load() {
		s.entered <- struct{}{}
		<-s.gate
	}
	return s.Store.Read(from, to)
}

// Verify reads the store without holding the replica: a step can run
// while Verify waits for the disk.
func TestVerifyDoesNotHoldTheReplica(t *testing.T) {
	g, err := NewGenesis([]string{"1", "2"}, DefaultInitialBalance, testPubKeys("1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	st := &gatedReads{Store: ms, entered: make(chan struct{}), gate: make(chan struct{})}
	n, err := newNode(Config{ID: "1", Genesis: g, Signer: testKey("1"), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	st.armed.Store(true)
	verified := make(chan error, 1)
	go func() { verified <- n.Verify() }()
	<-st.entered
	free := n.step.TryLock()
	if free {
		n.step.Unlock()
	}
	st.armed.Store(false)
	close(st.gate)
	if !free {
		t.Error("Verify holds the step lock while it reads the store")
	}
	if err := <-verified; err != nil {
		t.Fatal(err)
	}
}
