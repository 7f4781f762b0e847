package ledger

import (
	"fmt"
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
