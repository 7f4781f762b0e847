package ledger_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// A node whose peer has closed still closes with a ctx that never ends:
// what it sent the peer after the peer's goodbye (a request for the mutex,
// and its withdrawal) is not waited for, since that peer acknowledges
// nothing more.
func TestCloseAfterThePeerClosedReturns(t *testing.T) {
	defer goleak.VerifyNone(t)
	members := []string{"1", "2"}
	keys, signers := map[string]ed25519.PublicKey{}, map[string]ed25519.PrivateKey{}
	listeners, addrs := map[string]net.Listener{}, map[string]string{}
	for _, id := range members {
		var err error
		if keys[id], signers[id], err = ed25519.GenerateKey(nil); err != nil {
			t.Fatal(err)
		}
		if listeners[id], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		addrs[id] = listeners[id].Addr().String()
	}
	genesis, err := ledger.NewGenesis(members, 10, keys)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*ledger.Node{}
	for _, id := range members {
		tr, err := transport.NewTCP(transport.TCPConfig{ID: id, Listener: listeners[id], Peers: addrs})
		if err != nil {
			t.Fatal(err)
		}
		if nodes[id], err = ledger.NewNode(ledger.Config{ID: id, Genesis: genesis, Signer: signers[id]}, tr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nodes["1"].Transfer(context.Background(), "2", 1); err != nil {
		t.Fatal(err)
	}
	if err := nodes["2"].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Node 1 asks for the mutex, which node 2 can no longer grant, and
	// gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := nodes["1"].Transfer(ctx, "2", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("transfer with node 2 closed: %v, want the ctx's deadline", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- nodes["1"].Close(context.Background()) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute): // a hang guard, not a bound on how long Close takes
		t.Fatal("node 1's Close did not return: it waits for node 2, which closed")
	}
}
