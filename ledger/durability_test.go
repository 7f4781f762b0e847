package ledger_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// gatedStore is a MemStore whose Sync waits until the test opens its gate,
// or fails once the test sets fail.
type gatedStore struct {
	*ledger.MemStore
	gate    chan struct{} // Sync waits for a receive; closed: Sync goes ahead
	syncing chan struct{} // gets a value each time a Sync starts waiting

	mu   sync.Mutex
	fail error
}

func newGatedStore(t *testing.T, g ledger.Block) *gatedStore {
	st, err := ledger.NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	return &gatedStore{MemStore: st, gate: make(chan struct{}), syncing: make(chan struct{}, 64)}
}

func (s *gatedStore) Sync() error {
	select {
	case s.syncing <- struct{}{}:
	default:
	}
	<-s.gate
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	return s.MemStore.Sync()
}

// startPair starts nodes "1" and "2" of one ledger over a channel network,
// node 1 on st1 and node 2 on a MemStore, with durability d. stop closes
// the nodes and the network.
func startPair(t *testing.T, st1 ledger.Store, g ledger.Block, d ledger.Durability) (n1, n2 *ledger.Node, stop func()) {
	t.Helper()
	ids := memberIDs(2)
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*ledger.Node
	for _, id := range ids {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ledger.Config{ID: id, Genesis: g, Signer: ledger.TestKey(id), Durability: d}
		if id == "1" {
			cfg.Store = st1
		}
		n, err := ledger.NewNode(cfg, ep)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return nodes[0], nodes[1], func() {
		closeNodes(t, nodes...)
		_ = net.Close(context.Background())
	}
}

type outcome struct {
	res ledger.Result
	err error
}

// transferWhileSyncWaits starts a pair of nodes under d, node 1 on a
// gated store, and a Transfer of 3 from node 1 to node 2, whose outcome
// comes on done; it returns once node 1's store syncs, with the sync held
// at st.gate.
func transferWhileSyncWaits(t *testing.T, d ledger.Durability) (st *gatedStore, n1, n2 *ledger.Node, done <-chan outcome, stop func()) {
	t.Helper()
	g := ledger.GenesisForTest(memberIDs(2), 0)
	st = newGatedStore(t, g)
	n1, n2, stop = startPair(t, st, g, d)
	out := make(chan outcome, 1)
	go func() {
		res, err := n1.Transfer(context.Background(), "2", 3)
		out <- outcome{res, err}
	}()
	<-st.syncing
	return st, n1, n2, out, stop
}

// TestSuccessWaitsForTheSyncNotTheMutex checks SyncAfterRelease: a
// transfer reports success only once its node's store has synced, and
// the node does not hold the mutex while it waits, so a peer commits
// meanwhile.
func TestSuccessWaitsForTheSyncNotTheMutex(t *testing.T) {
	defer goleak.VerifyNone(t)
	st, n1, n2, done, stop := transferWhileSyncWaits(t, ledger.SyncAfterRelease) // node 1 wrote, released, and now syncs
	defer stop()
	ctx := context.Background()
	if err := n1.WaitHeight(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Node 2 takes the mutex and commits on top of node 1's block while
	// node 1's sync still waits.
	res2, err := n2.Transfer(ctx, "1", 1)
	if err != nil {
		t.Fatalf("node 2 could not commit while node 1 synced: %v", err)
	}
	if res2.Block.Height != 2 {
		t.Fatalf("node 2's block at height %d, want 2", res2.Block.Height)
	}
	select {
	case o := <-done:
		t.Fatalf("node 1's transfer returned before its store synced: %+v", o)
	default:
	}
	close(st.gate)
	if o := <-done; o.err != nil || o.res.Block.Height != 1 {
		t.Fatalf("node 1's transfer: %+v", o)
	}
}

// TestSyncBeforeReleaseHoldsTheMutex checks the strict mode: the holder
// syncs before it releases, so a peer cannot commit while the sync waits.
// The broken variant of the test above: if the mode did not hold the
// mutex, node 2 would commit here.
func TestSyncBeforeReleaseHoldsTheMutex(t *testing.T) {
	defer goleak.VerifyNone(t)
	st, _, n2, done, stop := transferWhileSyncWaits(t, ledger.SyncBeforeRelease) // node 1 holds the mutex and syncs
	defer stop()
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := n2.Transfer(short, "1", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("node 2's transfer while node 1 held the mutex to sync: %v, want a deadline", err)
	}
	if h := n2.Head().Height; h != 0 {
		t.Fatalf("node 2 has height %d before node 1 released", h)
	}
	close(st.gate)
	if o := <-done; o.err != nil {
		t.Fatal(o.err)
	}
	if _, err := n2.Transfer(ctx, "1", 1); err != nil {
		t.Fatal(err)
	}
}

// TestFailedSyncStopsTheNode checks that a transfer whose sync failed is
// not reported as a success, and that the node stops.
func TestFailedSyncStopsTheNode(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 0)
	st := newGatedStore(t, g)
	st.fail = errors.New("disk on fire")
	close(st.gate)
	n1, _, stop := startPair(t, st, g, ledger.SyncAfterRelease)
	defer stop()
	ctx := context.Background()
	if _, err := n1.Transfer(ctx, "2", 3); !errors.Is(err, ledger.ErrDiverged) {
		t.Fatalf("transfer whose sync failed: %v, want ErrDiverged", err)
	}
	if err := n1.Err(); !errors.Is(err, st.fail) {
		t.Fatalf("Err after a failed sync: %v", err)
	}
	if _, err := n1.Transfer(ctx, "2", 1); !errors.Is(err, ledger.ErrDiverged) {
		t.Fatalf("transfer after the node stopped: %v, want ErrDiverged", err)
	}
}

func closeNodes(t *testing.T, nodes ...*ledger.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := n.Close(context.Background()); err != nil && !errors.Is(err, ledger.ErrDiverged) {
			t.Errorf("close node %s: %v", n.ID(), err)
		}
	}
}

// TestRestartFromCheckpoint checks that Close saves a checkpoint, that a
// node restarted on the store starts from it with the state it had, and
// that a checkpoint that does not verify is passed over for a
// verification from genesis, reaching the same state.
func TestRestartFromCheckpoint(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 1000)
	st := newLossyStore(g)
	n1, n2, stop := startPair(t, st, g, ledger.SyncAfterRelease)
	ctx := context.Background()
	for i := range 30 {
		from, to := n1, "2"
		if i%3 == 2 {
			from, to = n2, "1"
		}
		if _, err := from.Transfer(ctx, to, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.WaitHeight(ctx, 30); err != nil {
		t.Fatal(err)
	}
	head, balances := n1.Head(), n1.Balances()
	stop()

	restart := func(st *lossyStore) *ledger.Node {
		t.Helper()
		n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: g, Signer: ledger.TestKey("1"), Store: st})
		if err != nil {
			t.Fatal(err)
		}
		if n.Head().Hash != head.Hash || !maps.Equal(n.Balances(), balances) {
			t.Fatalf("restarted at %d %s with %v, want %d %s with %v", n.Head().Height, n.Head().Hash.Short(), n.Balances(),
				head.Height, head.Hash.Short(), balances)
		}
		if err := n.Verify(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	st = st.restart()
	if cp, tail, err := st.Load(); err != nil || cp == nil || cp.Height != head.Height || len(tail) != 0 {
		t.Fatalf("after Close the store holds checkpoint %+v and %d blocks after it (%v), want one at %d and none", cp, len(tail), err, head.Height)
	}
	n := restart(st)
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}

	st = st.restart()
	if err := st.SaveCheckpoint(head.Height, []byte("not a checkpoint")); err != nil {
		t.Fatal(err)
	}
	n = restart(st)
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A retried transfer that this node learns from a peer (its own block,
// lost here, kept there) is a success only once this node's store has
// synced the block: a Duplicate answer waits for the sync like a new
// commit does. Node 1's store lacks the block and its Sync is shut; node
// 2 has the block, and node 1 fetches it when a later block needs it.
func TestDuplicateWaitsForTheSync(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 0)
	chain, err := ledger.NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	tr := ledger.Transfer{ID: ledger.NewTransferID(), From: "1", To: "2", Amount: 3}
	blk, err := nextSealed(chain, tr, 1)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := ledger.NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := st2.Append(blk); err != nil {
		t.Fatal(err)
	}
	if err := st2.Sync(); err != nil {
		t.Fatal(err)
	}
	st1 := newGatedStore(t, g)
	net, err := transport.NewChanNetwork(memberIDs(2), transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*ledger.Node
	for id, st := range map[string]ledger.Store{"1": st1, "2": st2} {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		n, err := ledger.NewNode(ledger.Config{ID: id, Genesis: g, Signer: ledger.TestKey(id), Store: st}, ep)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	defer func() {
		closeNodes(t, nodes...)
		_ = net.Close(context.Background())
	}()
	n1 := nodes[0]
	if n1.ID() != "1" {
		n1 = nodes[1]
	}
	n2 := nodes[0]
	if n2 == n1 {
		n2 = nodes[1]
	}
	ctx := context.Background()
	// Node 2's next block reaches node 1 ahead of a gap, which node 1
	// fills by fetching the block it lost: written there, not synced.
	if _, err := n2.Transfer(ctx, "1", 1); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, hangGuard)
	defer wcancel()
	if err := n1.WaitHeight(wctx, 2); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	res, err := n1.TransferWithID(gone, tr.ID, tr.To, tr.Amount)
	close(st1.gate) // before any Fatal: Close syncs
	if err == nil {
		t.Fatalf("duplicate reported as a success before node 1 synced its block: %+v", res)
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("duplicate before the sync, with its ctx cancelled: %v, want context.Canceled", err)
	}
	res, err = n1.TransferWithID(ctx, tr.ID, tr.To, tr.Amount)
	if err != nil || !res.Duplicate || res.Block.Hash != blk.Hash {
		t.Fatalf("duplicate after the sync: %+v, %v", res, err)
	}
}

// failingCheckpoints is a MemStore whose SaveCheckpoint always fails, and
// counts its calls.
type failingCheckpoints struct {
	*ledger.MemStore
	mu    sync.Mutex
	tries int
}

func (s *failingCheckpoints) SaveCheckpoint(uint64, []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tries++
	return errors.New("no room for a checkpoint")
}

// TestFailedCheckpointWaitsAnInterval checks that a checkpoint the store
// refuses is tried again only an interval later, not at every sync, and
// that the node goes on committing.
func TestFailedCheckpointWaitsAnInterval(t *testing.T) {
	var st *failingCheckpoints
	_, nodes := newTestCluster(t, 2, func(id string, g ledger.Block) ledger.Store {
		ms, err := ledger.NewMemStore(g)
		if err != nil {
			t.Fatal(err)
		}
		if id != "1" {
			return ms
		}
		st = &failingCheckpoints{MemStore: ms}
		return st
	})
	const blocks = ledger.CheckpointInterval + 200
	for i := range blocks { // back and forth, so that nobody runs dry
		from, to := nodes[i%2], nodes[(i+1)%2].ID()
		if _, err := from.Transfer(context.Background(), to, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.tries == 0 || st.tries > 2 { // the one due at the interval, and Close's
		t.Fatalf("%d checkpoints tried for %d blocks, want 1 or 2", st.tries, blocks)
	}
}

// gappedStore is a store whose Load returns its blocks with one missing,
// and the last one unsealed: a damaged store that FileStore and MemStore
// refuse themselves, for the node's own check. It records Truncate calls.
type gappedStore struct {
	ledger.Store
	tail      []ledger.Block
	truncated []uint64
}

func (s *gappedStore) Load() (*ledger.Checkpoint, []ledger.Block, error) { return nil, s.tail, nil }

func (s *gappedStore) Truncate(h uint64) error {
	s.truncated = append(s.truncated, h)
	return nil
}

// A store whose blocks skip a height is refused as it is, before anything
// is cut from it: cutting its unsealed end by counting blocks would cut it
// at the wrong height.
func TestLoadRefusesGappedHeightsBeforeCutting(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 1000)
	st := newLossyStore(g)
	n1, _, stop := startPair(t, st, g, ledger.SyncAfterRelease)
	for i := range 4 {
		if _, err := n1.Transfer(context.Background(), "2", int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	st = st.restart()
	defer st.Close()
	blocks, err := st.Read(0, 4)
	if err != nil {
		t.Fatal(err)
	}
	last := blocks[4]
	last.Sig = nil // the rest of a batch whose write a crash tore
	gs := &gappedStore{Store: st, tail: []ledger.Block{blocks[0], blocks[1], blocks[3], last}}
	_, err = ledger.NewUnwired(ledger.Config{ID: "1", Genesis: g, Signer: ledger.TestKey("1"), Store: gs})
	if !errors.Is(err, ledger.ErrBadHeight) {
		t.Fatalf("NewNode on a store whose heights skip 2: %v, want ErrBadHeight", err)
	}
	if len(gs.truncated) > 0 {
		t.Fatalf("the store was cut at %v before its heights were checked", gs.truncated)
	}
}
