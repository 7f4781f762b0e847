package lamportmutex_test

import (
	"context"
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

// printer is an application of the Mutex: it prints the payloads that
// holders release. It embeds NopHandler for the methods it does not need.
type printer struct {
	lamportmutex.NopHandler
	id string
}

func (p printer) HandleRelease(from string, payload []byte) error {
	fmt.Printf("%s learns from %s: %s\n", p.id, from, payload)
	return nil
}

// Three peers share one lock over an in-process network. Each peer would
// normally live in its own process, with a TCP transport.
func ExampleNew() {
	peers := []string{"alice", "bob", "carol"}
	net, err := transport.NewChanNetwork(peers, transport.ChanOptions{})
	if err != nil {
		panic(err)
	}
	defer net.Close(context.Background())

	mus := map[string]*lamportmutex.Mutex{}
	for _, id := range peers {
		ep, err := net.Endpoint(id)
		if err != nil {
			panic(err)
		}
		cfg := lamportmutex.Config{ID: id, Peers: peers, Transport: ep}
		if id == "carol" { // the others need no application: a nil Handler
			cfg.Handler = printer{id: id}
		}
		mu, err := lamportmutex.New(cfg)
		if err != nil {
			panic(err)
		}
		defer mu.Close(context.Background())
		mus[id] = mu
	}

	ctx := context.Background()
	tok, err := mus["alice"].Lock(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println("alice holds the lock with token", tok.ID)
	// The payload reaches every peer before the release takes effect there.
	if err := mus["alice"].Unlock([]byte("balance is 42")); err != nil {
		panic(err)
	}

	if _, err := mus["carol"].Lock(ctx); err != nil {
		panic(err)
	}
	fmt.Println("carol holds the lock")
	if err := mus["carol"].Unlock(nil); err != nil {
		panic(err)
	}
	// Output:
	// alice holds the lock with token alice
	// carol learns from alice: balance is 42
	// carol holds the lock
}
