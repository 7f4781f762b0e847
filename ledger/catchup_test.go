package ledger_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// transfers commits k transfers from node from to node to, one at a time.
func (c *crashCluster) transfers(t *testing.T, from, to string, k int) {
	t.Helper()
	for range k {
		if _, err := c.node(from).Transfer(context.Background(), to, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// cutAtNextBlock cuts the network between holder and peer as soon as
// holder has made its next block, before its release leaves.
func (c *crashCluster) cutAtNextBlock(holder, peer string) {
	c.setOnLocal(func(id string) {
		if id == holder {
			_ = c.net.Partition(holder, peer)
		}
	})
}

// waitFetched waits until node id reported at least k blocks inserted by
// catch-up, and returns how many it reported.
func (c *crashCluster) waitFetched(t *testing.T, id string, k int) int {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		c.mu.Lock()
		got := c.fetched[id]
		c.mu.Unlock()
		if got >= k || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

// A client whose data folder was lost starts from genesis and fetches the
// whole chain from its peers, several batches of it, verifying each block.
func TestCatchUpAfterLostData(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 1, 0, 16)
	defer c.close()
	c.transfers(t, "1", "2", 150)
	c.transfers(t, "2", "3", 50)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c.converge(ctx)

	start := time.Now()
	c.crash("3", true)
	if err := c.node("3").WaitHeight(ctx, 200); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	chain := c.converge(ctx)
	// Events come just after the blocks are inserted.
	if got := c.waitFetched(t, "3", 200); got != 200 {
		t.Errorf("node 3 inserted %d blocks by catch-up, want 200", got)
	}
	// It works as before: its own transfer lands on the common chain.
	c.transfers(t, "3", "1", 1)
	if got := c.converge(ctx); len(got) != len(chain)+1 {
		t.Fatalf("chain of %d blocks after one more transfer, want %d", len(got), len(chain)+1)
	}
	t.Logf("a client with no data caught up on 200 blocks in %v (restart included)", took)
}

// A client that died while a block was on its way to it gets the block
// from its peers when it comes back.
func TestCatchUpMissedBlockInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 2, 0, 4)
	defer c.close()
	c.transfers(t, "2", "1", 3)
	// Node 1's next release to node 3 is held by a cut...
	c.cutAtNextBlock("1", "3")
	c.transfers(t, "1", "2", 1)
	c.setOnLocal(nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := c.node("2").WaitHeight(ctx, 4); err != nil {
		t.Fatal(err)
	}
	// ...and node 3 dies before it arrives: the release is dropped.
	c.crash("3", false)
	if err := c.net.Heal("1", "3"); err != nil {
		t.Fatal(err)
	}
	c.converge(ctx)
	if got := c.waitFetched(t, "3", 1); got != 1 {
		t.Fatalf("node 3 fetched %d blocks, want the one it missed", got)
	}
	c.transfers(t, "3", "1", 1)
	c.converge(ctx)
}

// A holder that dies after its release reached one peer but not the other,
// and loses its data too: the block lives on at the peer that has it, and
// reaches the other before anyone appends after it.
func TestCatchUpHolderDiedMidRelease(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 3, 0, 4)
	defer c.close()
	c.transfers(t, "3", "1", 2)
	c.cutAtNextBlock("1", "3") // the release reaches 2, not 3
	res, err := c.node("1").Transfer(context.Background(), "2", 5)
	if err != nil {
		t.Fatal(err)
	}
	c.setOnLocal(nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := c.node("2").WaitHeight(ctx, res.Block.Height); err != nil {
		t.Fatal(err)
	}
	if h := c.node("3").Head().Height; h >= res.Block.Height {
		t.Fatalf("node 3 has height %d: the cut did not hold the release", h)
	}
	c.crash("1", true)
	if err := c.net.Heal("1", "3"); err != nil {
		t.Fatal(err)
	}
	// Node 3 appends next; its block must go after node 1's.
	r3, err := c.node("3").Transfer(context.Background(), "2", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Block.Height != res.Block.Height+1 {
		t.Fatalf("node 3's block at height %d, want %d (after the dead holder's)", r3.Block.Height, res.Block.Height+1)
	}
	chain := c.converge(ctx)
	if chain[res.Block.Height].Hash != res.Block.Hash {
		t.Fatal("the dead holder's committed block is not in the converged chain")
	}
}

// BenchmarkCatchUp measures how fast a client whose ledger file was lost
// fetches the chain from its peers (3 nodes over the channel network, the
// default batch), per block, against the baseline of the same cluster
// committing those blocks in the first place (8 concurrent submitters per
// node, group commit). Metrics: ns/block-caught-up, ns/block-committed and
// their ratio.
func BenchmarkCatchUp(b *testing.B) {
	const blocks = 3000
	var caught, commit time.Duration
	for b.Loop() {
		b.StopTimer()
		c := newCrashCluster(b, 3, 1, 0, 0)
		start := time.Now()
		var wg sync.WaitGroup
		for _, id := range c.ids {
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range blocks / 24 {
						if _, err := c.node(id).Transfer(context.Background(), c.ids[(slicesIndex(c.ids, id)+1)%3], 1); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		ctx := context.Background()
		for _, id := range c.ids {
			if err := c.node(id).WaitHeight(ctx, blocks); err != nil {
				b.Fatal(err)
			}
		}
		commit += time.Since(start)
		b.StartTimer()
		start = time.Now()
		c.crash("3", true)
		if err := c.node("3").WaitHeight(ctx, blocks); err != nil {
			b.Fatal(err)
		}
		caught += time.Since(start)
		b.StopTimer()
		c.close()
		b.StartTimer()
	}
	n := float64(b.N) * blocks
	b.ReportMetric(float64(caught.Nanoseconds())/n, "ns/block-caught-up")
	b.ReportMetric(float64(commit.Nanoseconds())/n, "ns/block-committed")
	b.ReportMetric(float64(caught)/float64(commit), "catch-up/commit")
}
