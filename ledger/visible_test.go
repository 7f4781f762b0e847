package ledger_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
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
