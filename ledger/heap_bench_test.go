package ledger

import (
	"crypto/ed25519"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkChainHeap reports the live heap of a Chain after n blocks, and
// its bytes per block. The blocks carry fake seals (the draft does not
// check seals; Append would), and, as blocks decoded from a store or the
// wire do, their own strings and seal bytes. Run it with -benchtime=1x.
func BenchmarkChainHeap(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("blocks=%d", n), func(b *testing.B) {
			for range b.N {
				before := liveHeap()
				c := fakeChain(b, n)
				after := liveHeap()
				runtime.KeepAlive(c)
				b.ReportMetric(float64(after-before)/(1<<20), "heap-MB")
				b.ReportMetric(float64(after-before)/float64(n), "B/block")
			}
		})
	}
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// fakeChain returns a chain of n transfer blocks among three members, in
// runs of up to 64 blocks, each run's last block carrying a fake seal.
func fakeChain(tb testing.TB, n int) *Chain {
	members := []string{"1", "2", "3"}
	g, err := NewGenesis(members, 1<<40, testPubKeys(members...))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := NewChain(g)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for c.Len() <= n {
		d := c.draft()
		from := rng.IntN(3)
		k := min(1+rng.IntN(64), n+1-c.Len())
		for i := range k {
			var id TransferID
			for j := range id {
				id[j] = byte(rng.Uint32())
			}
			t := Transfer{ID: id, From: strings.Clone(members[from]), To: strings.Clone(members[(from+1)%3]), Amount: 1}
			blk := Block{Height: d.head.Height + 1, Prev: d.head.Hash, Clock: d.head.Height, Transfer: t}
			blk.Hash = blk.ComputeHash()
			if i == k-1 {
				blk.Sig = make([]byte, SigSize)
				blk.Sig[0] = 1
			}
			if err := d.add(blk); err != nil {
				tb.Fatal(err)
			}
		}
		if err := c.apply(d, len(d.blocks)); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// BenchmarkVerifyChainStream verifies chains of n sealed blocks, generated
// as they are read, and reports the largest heap seen while verifying:
// verification holds the chain's bounded state, not the blocks.
func BenchmarkVerifyChainStream(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("blocks=%d", n), func(b *testing.B) {
			for range b.N {
				base := liveHeap()
				var peak uint64
				c, err := verifyChain(sealedBlocks(b, n, func() {
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}))
				if err != nil || c.Len() != n+1 {
					b.Fatalf("verify: %v", err)
				}
				b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MB")
			}
		})
	}
}

// sealedBlocks yields a valid chain of n transfer blocks after its
// genesis, in sealed runs of up to 64 blocks, calling sample every 10,000
// blocks.
func sealedBlocks(tb testing.TB, n int, sample func()) iter.Seq2[Block, error] {
	members := []string{"1", "2", "3"}
	g, err := NewGenesis(members, 1<<40, testPubKeys(members...))
	if err != nil {
		tb.Fatal(err)
	}
	keys := []ed25519.PrivateKey{testKey("1"), testKey("2"), testKey("3")}
	return func(yield func(Block, error) bool) {
		if !yield(g, nil) {
			return
		}
		rng := rand.New(rand.NewPCG(2, 2))
		head := g
		for head.Height < uint64(n) {
			from := rng.IntN(3)
			k := min(1+rng.IntN(64), n-int(head.Height))
			for i := range k {
				var id TransferID
				for j := range id {
					id[j] = byte(rng.Uint32())
				}
				t := Transfer{ID: id, From: members[from], To: members[(from+1)%3], Amount: 1}
				blk := Block{Height: head.Height + 1, Prev: head.Hash, Clock: head.Height, Transfer: t}
				blk.Hash = blk.ComputeHash()
				if i == k-1 {
					blk = blk.Seal(keys[from])
				}
				if blk.Height%10_000 == 0 {
					sample()
				}
				if !yield(blk, nil) {
					return
				}
				head = blk
			}
		}
	}
}
