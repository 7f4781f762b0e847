package ledger_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// BenchmarkReplicated: committed transfers per second among 3 nodes over
// the real mutex on the in-process channel network (no delay), stores in
// memory, with 64 goroutines submitting: group commit, one seal per
// batch, one verification per batch at each peer.
func BenchmarkReplicated(b *testing.B) {
	const nodes, submitters = 3, 64
	ids := memberIDs(nodes)
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close(context.Background())
	ns := make([]*ledger.Node, nodes)
	for i, id := range ids {
		n, err := ledger.NewUnwired(ledger.Config{ID: id, Genesis: ledger.GenesisForTest(ids, 1<<40), Signer: ledger.TestKey(id)})
		if err != nil {
			b.Fatal(err)
		}
		defer n.Close(context.Background())
		ep, err := net.Endpoint(id)
		if err != nil {
			b.Fatal(err)
		}
		mu, err := lamportmutex.New(n.MutexConfig(lamportmutex.Config{ID: id, Peers: ids, Transport: ep}))
		if err != nil {
			b.Fatal(err)
		}
		defer mu.Close(context.Background())
		if err := n.SetLocker(mu); err != nil {
			b.Fatal(err)
		}
		ns[i] = n
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for s := range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, to := ns[s%nodes], ids[(s+1)%nodes]
			for left.Add(-1) >= 0 {
				if _, err := n.Transfer(context.Background(), to, 1); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "transfers/s")
	for _, n := range ns {
		if err := n.WaitHeight(context.Background(), uint64(b.N)); err != nil {
			b.Fatal(err)
		}
	}
	batches := 0
	for _, blk := range ns[0].Blocks()[1:] {
		if blk.Sealed() {
			batches++
		}
	}
	if batches > 0 {
		b.ReportMetric(float64(b.N)/float64(batches), "blocks/batch")
	}
}
