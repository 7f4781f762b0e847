package lamportmutex_test

import (
	"context"
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

// Three peers share one lock over an in-process network. Each peer would
// normally live in its own process, with a TCP transport.
func ExampleNew() {
	peers := []string{"alice", "bob", "carol"}
	net, err := transport.NewChanNetwork(peers, transport.ChanOptions{})
	if err != nil {
		panic(err)
	}
	defer net.Close()

	mus := map[string]*lamportmutex.Mutex{}
	for _, id := range peers {
		ep, err := net.Endpoint(id)
		if err != nil {
			panic(err)
		}
		mu, err := lamportmutex.New(lamportmutex.Config{
			ID:        id,
			Peers:     peers,
			Transport: ep,
			OnRelease: func(from string, payload []byte) error {
				if id == "carol" {
					fmt.Printf("carol learns from %s: %s\n", from, payload)
				}
				return nil
			},
		})
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
