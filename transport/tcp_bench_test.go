package transport

import (
	"context"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// benchPair starts a and b on loopback and consumes their PeerUps.
func benchPair(b *testing.B) (*TCP, *TCP) {
	c := newTCPCluster(b, []string{"a", "b"}, func(cfg *TCPConfig) { cfg.Logger = nil })
	for _, tr := range c.nodes {
		if m := <-tr.Receive(); m.Kind != lamportmutex.PeerUp {
			b.Fatalf("%s: got %v, want PeerUp", tr.ID(), m)
		}
	}
	return c.nodes["a"], c.nodes["b"]
}

// BenchmarkTCPRoundTrip measures a ping-pong of small messages over
// loopback: a sends to b, which answers.
func BenchmarkTCPRoundTrip(b *testing.B) {
	a, bb := benchPair(b)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range bb.Receive() {
			if err := bb.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a", Clock: m.Clock}); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: uint64(i)}); err != nil {
			b.Fatal(err)
		}
		if m := <-a.Receive(); m.Clock != uint64(i) {
			b.Fatalf("got %v", m)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/roundtrip")
	b.StopTimer()
	bb.Close()
	<-done
}

// BenchmarkTCPOneWay measures the throughput of small messages from a to b.
func BenchmarkTCPOneWay(b *testing.B) {
	a, bb := benchPair(b)
	ctx := context.Background()
	got := make(chan int)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		n := 0
		for range bb.Receive() {
			if n++; n == b.N {
				break
			}
		}
		got <- n
	}()
	for i := range b.N {
		if err := a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: uint64(i), Payload: []byte("0123456789abcdef")}); err != nil {
			b.Fatal(err)
		}
	}
	if n := <-got; n != b.N {
		b.Fatalf("received %d of %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
