package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// TestReplicatedOverRealMutex runs Nodes over the real lamportmutex on the
// channel network, with random message delays, and concurrent random
// transfers from every node: every replica must end with the same verified
// chain, and money must be conserved.
func TestReplicatedOverRealMutex(t *testing.T) {
	for _, tc := range []struct{ nodes, transfers int }{{3, 60}, {8, 15}} {
		t.Run(fmt.Sprintf("nodes=%d", tc.nodes), func(t *testing.T) {
			defer goleak.VerifyNone(t)
			ids := memberIDs(tc.nodes)
			net, err := transport.NewChanNetwork(ids, transport.ChanOptions{Seed: int64(tc.nodes), MaxDelay: 200 * time.Microsecond})
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close(context.Background())
			genesis, err := ledger.NewGenesis(ids, ledger.DefaultInitialBalance, testPub)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			nodes := make([]*ledger.Node, len(ids))
			for i, id := range ids {
				var st ledger.Store
				if i == 0 { // one durable replica, synced
					st, err = ledger.OpenFileStore(filepath.Join(dir, id+".log"), genesis, ledger.FileOptions{})
				} else {
					st, err = ledger.NewMemStore(genesis)
				}
				if err != nil {
					t.Fatal(err)
				}
				node, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(ids, 0), Store: st})
				if err != nil {
					t.Fatal(err)
				}
				defer node.Close(context.Background())
				ep, err := net.Endpoint(id)
				if err != nil {
					t.Fatal(err)
				}
				mu, err := lamportmutex.New(node.MutexConfig(lamportmutex.Config{ID: id, Peers: ids, Transport: ep}))
				if err != nil {
					t.Fatal(err)
				}
				defer mu.Close(context.Background())
				if err := node.SetLocker(mu); err != nil {
					t.Fatal(err)
				}
				nodes[i] = node
			}

			var wg sync.WaitGroup
			var mu sync.Mutex
			committed := 0
			for i := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(tc.nodes), uint64(i)))
					for range tc.transfers {
						to := ids[(i+1+r.IntN(len(ids)-1))%len(ids)]
						_, err := nodes[i].Transfer(context.Background(), to, 1+r.Int64N(6))
						switch {
						case err == nil:
							mu.Lock()
							committed++
							mu.Unlock()
						case !errors.Is(err, ledger.ErrInsufficientFunds):
							t.Errorf("node %s: %v", ids[i], err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if committed == 0 {
				t.Fatal("no transfer committed")
			}
			// The last releases reach the bystanders asynchronously.
			for _, n := range nodes {
				if err := n.WaitHeight(context.Background(), uint64(committed)); err != nil {
					t.Fatal(err)
				}
			}
			want := nodes[0].Head()
			if want.Height != uint64(committed) {
				t.Fatalf("height %d, want %d committed", want.Height, committed)
			}
			for i, n := range nodes {
				if err := n.Err(); err != nil {
					t.Fatalf("node %s failed: %v", ids[i], err)
				}
				if err := n.Verify(); err != nil {
					t.Fatalf("node %s: %v", ids[i], err)
				}
				if h := n.Head(); h.Hash != want.Hash {
					t.Fatalf("node %s head %v, node %s head %v", ids[i], h, ids[0], want)
				}
				if sum := total(t, n.Balances()); sum != int64(len(ids))*ledger.DefaultInitialBalance {
					t.Fatalf("node %s: money %d", ids[i], sum)
				}
			}
			t.Logf("%d nodes: %d transfers committed, head %s", len(ids), committed, want.Hash.Short())
		})
	}
}
