package transport_test

import (
	"context"
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

func ExampleNewChanNetwork() {
	net, err := transport.NewChanNetwork([]string{"alice", "bob"}, transport.ChanOptions{Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer net.Close(context.Background())
	alice, _ := net.Endpoint("alice")
	bob, _ := net.Endpoint("bob")

	// Endpoints are lamportmutex.Transports; a Mutex is configured with one
	// and starts it. Here bob's deliveries go to a channel.
	var tr lamportmutex.Transport = alice
	got := make(chan lamportmutex.Message, 8)
	if err := bob.Start(func(m lamportmutex.Message) { got <- m }); err != nil {
		fmt.Println(err)
		return
	}
	err = tr.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "alice", To: "bob", Clock: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Bob first learns that alice is up, then gets her request.
	fmt.Println(<-got)
	fmt.Println(<-got)

	// A partition holds messages (bob hears of the cut); Heal delivers
	// them, in order.
	_ = net.Partition("alice", "bob")
	for clock := uint64(2); clock <= 3; clock++ {
		_ = alice.Send(lamportmutex.Message{
			Kind: lamportmutex.Release, From: "alice", To: "bob", Clock: clock, Payload: []byte("block"),
		})
	}
	_ = net.Heal("alice", "bob")
	fmt.Println(<-got)
	fmt.Println(<-got)
	fmt.Println(<-got)
	// Output:
	// alice->bob PEERUP#1
	// alice->bob REQUEST@1
	// alice->bob PEERDOWN@0
	// alice->bob RELEASE@2 payload=5B
	// alice->bob RELEASE@3 payload=5B
}
