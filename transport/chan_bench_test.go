package transport

import (
	"context"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// BenchmarkChanRoundTrip measures a ping-pong between two endpoints: one
// op is a REQUEST from a to b and a REPLY back, so four codec passes and
// two hand-offs to a link's goroutine. b answers from inside its deliver.
func BenchmarkChanRoundTrip(b *testing.B) {
	n, err := NewChanNetwork([]string{"a", "b"}, ChanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close(context.Background())
	a, _ := n.Endpoint("a")
	bb, _ := n.Endpoint("b")
	replies := make(chan uint64, 1)
	if err := bb.Start(func(m lamportmutex.Message) {
		if m.Kind == lamportmutex.Request {
			_ = bb.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a", Clock: m.Clock + 1})
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := a.Start(func(m lamportmutex.Message) {
		if m.Kind == lamportmutex.Reply {
			replies <- m.Clock
		}
	}); err != nil {
		b.Fatal(err)
	}
	ping := lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ping.Clock = uint64(i)
		if err := a.Send(ping); err != nil {
			b.Fatal(err)
		}
		if c := <-replies; c != uint64(i)+1 {
			b.Fatalf("reply clock %d, want %d", c, i+1)
		}
	}
	b.StopTimer()
}
