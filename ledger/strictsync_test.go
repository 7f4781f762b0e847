package ledger_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// syncFailStore is a lossyStore whose Sync fails while failing is set.
// What it appended stays on its disk, as after an fsync error the page
// cache still holds what was written, and a crash of the process keeps it.
type syncFailStore struct {
	*lossyStore
	failing atomic.Bool
}

var errFsync = errors.New("fsync: input/output error")

func (s *syncFailStore) Sync() error {
	if s.failing.Load() {
		return errFsync
	}
	return s.lossyStore.Sync()
}

// TestStrictSyncFailureDoesNotFork checks SyncBeforeRelease when the
// holder's own sync fails after its blocks were appended: its store may
// keep them, so no peer may build other blocks at their heights. Node 1's
// sync fails; node 1's process then dies with its disk intact and
// restarts; node 2 commits. Both must hold the same block 1, and the
// transfer whose outcome is unknown must say so (ErrDiverged), as a
// failed sync does under SyncAfterRelease.
func TestStrictSyncFailureDoesNotFork(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	ids := memberIDs(2)
	g := ledger.GenesisForTest(ids, 0)
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = net.Close(ctx) }()
	start := func(id string, ep *transport.ChanEndpoint, st ledger.Store) *ledger.Node {
		n, err := ledger.NewNode(ledger.Config{ID: id, Genesis: g, Signer: ledger.TestKey(id), Store: st,
			Durability: ledger.SyncBeforeRelease}, ep)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ep1, err := net.Endpoint("1")
	if err != nil {
		t.Fatal(err)
	}
	ep2, err := net.Endpoint("2")
	if err != nil {
		t.Fatal(err)
	}
	disk := newLossyStore(g)
	st1 := &syncFailStore{lossyStore: disk}
	st1.failing.Store(true)
	n1 := start("1", ep1, st1)
	n2 := start("2", ep2, nil)
	defer func() { _ = n2.Close(ctx) }()

	_, err = n1.Transfer(ctx, "2", 3)
	if err == nil {
		t.Fatal("a transfer whose sync failed reported success")
	}
	if !errors.Is(err, ledger.ErrDiverged) {
		t.Errorf("transfer whose sync failed: %v; want ErrDiverged: its block may survive", err)
	}
	if err := n1.Err(); !errors.Is(err, errFsync) {
		t.Errorf("Err after the node's own sync failed: %v", err)
	}

	// Node 2 commits; it may have to wait for node 1's next incarnation.
	done := make(chan outcome, 1)
	go func() {
		res, err := n2.Transfer(ctx, "1", 1)
		done <- outcome{res, err}
	}()
	var o outcome
	waited := false
	if !n1.LockState().Held { // node 1 let the mutex go: node 2 commits now
		o, waited = <-done, true
	}
	// Node 1's process dies; its disk keeps what it appended.
	ep1b, err := net.Restart("1")
	if err != nil {
		t.Fatal(err)
	}
	_ = n1.Close(ctx)
	n1b := start("1", ep1b, &lossyStore{d: disk.d})
	defer func() { _ = n1b.Close(ctx) }()
	kept := n1b.Blocks()

	if !waited {
		o = <-done
	}
	if o.err != nil {
		t.Fatalf("node 2's transfer: %v", o.err)
	}
	t.Logf("node 1 restarted at height %d; node 2 at %d", len(kept)-1, n2.Head().Height)
	if len(kept) < 2 {
		return // node 1's block did not survive: nothing to fork from
	}
	got := n2.Blocks()
	if len(got) < 2 || got[1].Hash != kept[1].Hash {
		t.Fatalf("fork at height 1: node 1 restarted with its block %s (%s), which node 2 lacks; node 2 has %s (%s)",
			kept[1].Hash.Short(), kept[1].Transfer, got[1].Hash.Short(), got[1].Transfer)
	}
}

// TestStrictSyncFailureFailsQueuedTransfers checks that a transfer queued
// behind a batch whose own sync fails under SyncBeforeRelease gets the
// node's failure, not a wait for the mutex that the node keeps.
func TestStrictSyncFailureFailsQueuedTransfers(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx := context.Background()
	ids := memberIDs(2)
	st := &syncFailStore{lossyStore: newLossyStore(ledger.GenesisForTest(ids, 0))}
	st.failing.Store(true)
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(ids, 0),
		Store: st, Durability: ledger.SyncBeforeRelease, MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	l := newGapLocker("1")
	l.sem <- struct{}{} // a peer holds the mutex while both transfers queue
	_ = n.SetLocker(l)
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := n.Transfer(ctx, "2", 1)
			done <- err
		}()
	}
	for ledger.QueueLen(n) < 2 {
		runtime.Gosched()
	}
	<-l.sem // the peer releases: the first batch's sync fails
	if err := <-done; !errors.Is(err, ledger.ErrDiverged) {
		t.Fatalf("transfer whose sync failed: %v, want ErrDiverged", err)
	}
	_ = n.Close(ctx) // a transfer still waiting for the mutex ends now, with ErrClosed
	if err := <-done; !errors.Is(err, ledger.ErrDiverged) {
		t.Fatalf("transfer queued behind the failed sync: %v, want ErrDiverged", err)
	}
}
