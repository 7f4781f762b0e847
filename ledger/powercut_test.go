package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
)

// lyingStore is the broken variant that the durability check must catch:
// its Sync reports success without making anything durable.
type lyingStore struct{ *lossyStore }

func (lyingStore) Sync() error { return nil }

// successesSurvivePowerCut runs concurrent transfers among 3 nodes whose
// stores mk makes. It checks, as each transfer returns success, that a
// power cut at that moment would keep its block; then it cuts every
// node's power, restarts each on what its store kept, and checks again.
// It reports the first transfer that returned success but would be lost.
func successesSurvivePowerCut(t *testing.T, mk func(g ledger.Block) (ledger.Store, *lossyStore)) error {
	t.Helper()
	lossy := map[string]*lossyStore{}
	_, nodes := newTestCluster(t, 3, func(id string, g ledger.Block) ledger.Store {
		st, l := mk(g)
		lossy[id] = l
		return st
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	done := map[string][]ledger.Block{} // each sender's successful blocks
	var lostAt []error                  // successes a power cut at their return would lose
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 15 {
				res, err := n.Transfer(context.Background(), nodes[(i+1+k%2)%3].ID(), 1)
				if errors.Is(err, ledger.ErrInsufficientFunds) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				// A power cut right now must keep it.
				if !lossy[n.ID()].durableHas(res.Block) {
					mu.Lock()
					lostAt = append(lostAt, fmt.Errorf("node %s: transfer in block %d returned success before a sync covered it", n.ID(), res.Block.Height))
					mu.Unlock()
				}
				mu.Lock()
				done[n.ID()] = append(done[n.ID()], res.Block)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(lostAt) > 0 {
		return lostAt[0]
	}
	members := memberIDs(3)
	for _, id := range members {
		st := lossy[id].restart()
		n, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(members, 0), Store: st})
		if err != nil {
			t.Fatal(err)
		}
		chain := n.Blocks()
		_ = n.Close(context.Background())
		for _, b := range done[id] {
			if b.Height >= uint64(len(chain)) || chain[b.Height].Hash != b.Hash {
				return fmt.Errorf("node %s: its successful transfer in block %d is lost after a power cut (%d blocks left)", id, b.Height, len(chain))
			}
		}
	}
	return nil
}

// Every transfer that returned success survives a power cut of its
// sender: the node reports success only after a Sync covers the block.
func TestSuccessSurvivesPowerCut(t *testing.T) {
	defer goleak.VerifyNone(t)
	err := successesSurvivePowerCut(t, func(g ledger.Block) (ledger.Store, *lossyStore) {
		l := newLossyStore(g)
		return l, l
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The check is checked: with a store whose Sync lies, it finds a lost
// success.
func TestSuccessSurvivesPowerCutCatchesLyingSync(t *testing.T) {
	defer goleak.VerifyNone(t)
	err := successesSurvivePowerCut(t, func(g ledger.Block) (ledger.Store, *lossyStore) {
		l := newLossyStore(g)
		return lyingStore{l}, l
	})
	if err == nil {
		t.Fatal("a store that never syncs lost no successful transfer")
	}
}
