package transport

import (
	"context"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// BenchmarkChanRoundTrip measures a ping-pong between two endpoints: one
// op is a REQUEST from a to b and a REPLY back, so four codec passes and
// two hand-offs through each side's inbox.
func BenchmarkChanRoundTrip(b *testing.B) {
	n, err := NewChanNetwork([]string{"a", "b"}, ChanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	a, _ := n.Endpoint("a")
	bb, _ := n.Endpoint("b")
	ctx := context.Background()
	<-a.Receive()  // PeerUp(b)
	<-bb.Receive() // PeerUp(a)
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for m := range bb.Receive() {
			if err := bb.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a", Clock: m.Clock + 1}); err != nil {
				return
			}
		}
	}()
	ping := lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ping.Clock = uint64(i)
		if err := a.Send(ctx, ping); err != nil {
			b.Fatal(err)
		}
		if m := <-a.Receive(); m.Clock != uint64(i)+1 {
			b.Fatalf("reply clock %d, want %d", m.Clock, i+1)
		}
	}
	b.StopTimer()
	n.Close()
	<-echoDone
}
