package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// benchPair starts a and b on loopback, delivering to deliver(id), and
// waits until each has its PeerUp (which deliver must pass on to up).
func benchPair(b *testing.B, deliver func(id string) func(lamportmutex.Message)) (*TCP, *TCP) {
	c := newTCPClusterDeliver(b, []string{"a", "b"}, func(cfg *TCPConfig) { cfg.Logger = nil }, deliver)
	return c.nodes["a"], c.nodes["b"]
}

// BenchmarkTCPRoundTrip measures a ping-pong of small messages over
// loopback: a sends to b, whose deliver answers at once (run to
// completion, as the Mutex does).
func BenchmarkTCPRoundTrip(b *testing.B) {
	got := make(chan lamportmutex.Message, 1)
	up := make(chan struct{}, 2)
	var bb *TCP
	ready := make(chan struct{})
	a, bb := benchPair(b, func(id string) func(lamportmutex.Message) {
		return func(m lamportmutex.Message) {
			if m.Kind == lamportmutex.PeerUp {
				up <- struct{}{}
				return
			}
			if id == "a" {
				got <- m
				return
			}
			<-ready
			_ = bb.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a", Clock: m.Clock})
		}
	})
	close(ready)
	<-up
	<-up
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: uint64(i)}); err != nil {
			b.Fatal(err)
		}
		if m := <-got; m.Clock != uint64(i) {
			b.Fatalf("got %v", m)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/roundtrip")
	b.StopTimer()
}

// BenchmarkTCPOneWay measures the throughput of small messages from a to
// b; a waits for room when its queue is full.
func BenchmarkTCPOneWay(b *testing.B) {
	got := make(chan struct{})
	n := 0
	a, _ := benchPair(b, func(id string) func(lamportmutex.Message) {
		return func(m lamportmutex.Message) {
			if id == "b" && m.Kind == lamportmutex.Request {
				if n++; n == b.N {
					close(got)
				}
			}
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		m := lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: uint64(i), Payload: []byte("0123456789abcdef")}
		for {
			err := a.Send(m)
			if err == nil {
				break
			}
			if !errors.Is(err, lamportmutex.ErrQueueFull) {
				b.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	<-got
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
