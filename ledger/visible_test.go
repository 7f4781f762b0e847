package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// TestSuccessIsVisibleWhenReported checks read-your-writes: once Transfer
// reports success, the node's own reads (Head, Balance) show its block.
// Under SyncBeforeRelease the success is known within the step that
// commits, so it must not be reported before that step's snapshot is out.
func TestSuccessIsVisibleWhenReported(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, d := range []ledger.Durability{ledger.SyncBeforeRelease, ledger.SyncAfterRelease} {
		g := ledger.GenesisForTest(memberIDs(2), 1_000_000)
		st, err := ledger.NewMemStore(g)
		if err != nil {
			t.Fatal(err)
		}
		n1, _, stop := startPair(t, st, g, d)
		for i := range 300 {
			res, err := n1.Transfer(context.Background(), "2", 1)
			if err != nil {
				stop()
				t.Fatal(err)
			}
			head := n1.Head()
			bal, _ := n1.Balance("1")
			if head.Height < res.Block.Height || bal != res.After["1"] && head.Height == res.Block.Height {
				stop()
				t.Fatalf("durability %d, transfer %d: success reported for block %d, but Head is at %d and Balance %d (want %d)",
					d, i, res.Block.Height, head.Height, bal, res.After["1"])
			}
		}
		stop()
	}
}

// TestEventsSeeTheirStep checks that a subscriber told of a step's outcome
// reads it from the node: on EventBlockInserted, Head is at least at the
// block; on EventFailed, Err is set.
func TestEventsSeeTheirStep(t *testing.T) {
	defer goleak.VerifyNone(t)
	ids := memberIDs(2)
	g := ledger.GenesisForTest(ids, 1_000_000)
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = net.Close(context.Background()) }()
	var node atomic.Pointer[ledger.Node]
	var mu sync.Mutex
	var stale []string
	onEvent := func(ev ledger.Event) {
		n := node.Load()
		if n == nil {
			return
		}
		switch {
		case ev.Kind == ledger.EventBlockInserted && n.Head().Height < ev.Block.Height:
			mu.Lock()
			stale = append(stale, fmt.Sprintf("block %d inserted, Head at %d", ev.Block.Height, n.Head().Height))
			mu.Unlock()
		case ev.Kind == ledger.EventFailed && n.Err() == nil:
			mu.Lock()
			stale = append(stale, "EventFailed, Err nil")
			mu.Unlock()
		}
	}
	st := &syncFailStore{lossyStore: newLossyStore(g)}
	var nodes []*ledger.Node
	for _, id := range ids {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ledger.Config{ID: id, Genesis: g, Signer: ledger.TestKey(id)}
		if id == "1" {
			cfg.Store, cfg.OnEvent = st, onEvent
		}
		n, err := ledger.NewNode(cfg, ep)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	defer closeNodes(t, nodes...)
	n1 := nodes[0]
	node.Store(n1)
	for range 300 {
		if _, err := n1.Transfer(context.Background(), "2", 1); err != nil {
			t.Fatal(err)
		}
	}
	st.failing.Store(true)
	if _, err := n1.Transfer(context.Background(), "2", 1); err == nil {
		t.Fatal("a transfer whose sync failed succeeded")
	}
	node.Store(nil)
	_ = n1.Close(context.Background()) // delivers the queued events
	mu.Lock()
	defer mu.Unlock()
	if len(stale) > 0 {
		t.Fatalf("%d events came before the state they report, first: %s", len(stale), stale[0])
	}
}
