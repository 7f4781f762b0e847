package lamportmutex_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// BenchmarkMutex compares the algorithms over the channel network: one peer
// locking with the others idle (uncontended), and every peer looping
// (contended). msgs/entry is what the algorithm costs: 3(N-1) for Lamport,
// 2(N-1) for Ricart-Agrawala.
func BenchmarkMutex(b *testing.B) {
	for _, algo := range algorithms {
		for _, n := range []int{3, 8} {
			b.Run(fmt.Sprintf("%v/uncontended/N=%d", algo, n), func(b *testing.B) {
				g := newBenchGroup(b, n, algo)
				mu := g.mus["1"]
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := mu.Lock(ctx); err != nil {
						b.Fatal(err)
					}
					if err := mu.Unlock(nil); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				reportMsgs(b, g)
			})
			b.Run(fmt.Sprintf("%v/contended/N=%d", algo, n), func(b *testing.B) {
				g := newBenchGroup(b, n, algo)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/n + 1
				for _, id := range g.ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if _, err := g.mus[id].Lock(ctx); err != nil {
								b.Error(err)
								return
							}
							if err := g.mus[id].Unlock(nil); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				reportMsgs(b, g)
			})
		}
	}
}

func newBenchGroup(b *testing.B, n int, algo lamportmutex.Algorithm) *group {
	return newGroupTB(b, n, algo)
}

// reportMsgs closes the group (so every queued message is counted) and
// reports messages per entry, HELLOs of first contact left out.
func reportMsgs(b *testing.B, g *group) {
	var entries, msgs uint64
	for _, mu := range g.mus {
		_ = mu.Close(context.Background())
		st := mu.Stats()
		entries += st.Entries
		for k, v := range st.Sent {
			if k != lamportmutex.Hello {
				msgs += v
			}
		}
	}
	if entries > 0 {
		b.ReportMetric(float64(msgs)/float64(entries), "msgs/entry")
	}
}
