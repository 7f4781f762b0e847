package ledger_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// Two clients of one ledger, each embedded as a Node on its own TCP port
// (here both in this process, on loopback). Each member has an Ed25519 key
// pair; the genesis holds the public keys and the initial balances.
func ExampleNewNode() {
	ctx := context.Background()
	members := []string{"1", "2"}
	keys, signers := map[string]ed25519.PublicKey{}, map[string]ed25519.PrivateKey{}
	listeners, addrs := map[string]net.Listener{}, map[string]string{}
	for _, id := range members {
		keys[id], signers[id], _ = ed25519.GenerateKey(nil)
		listeners[id], _ = net.Listen("tcp", "127.0.0.1:0")
		addrs[id] = listeners[id].Addr().String()
	}
	genesis, _ := ledger.NewGenesis(members, 10, keys)

	nodes := map[string]*ledger.Node{}
	for _, id := range members {
		tr, err := transport.NewTCP(transport.TCPConfig{ID: id, Listener: listeners[id], Peers: addrs})
		if err != nil {
			fmt.Println(err)
			return
		}
		// The node builds its mutex on tr, and owns tr from here on.
		node, err := ledger.NewNode(ledger.Config{ID: id, Genesis: genesis, Signer: signers[id]}, tr)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer node.Close(ctx) // releases, syncs, and closes the mutex, tr and the store
		nodes[id] = node
	}

	res, err := nodes["1"].Transfer(ctx, "2", 3) // Lock, check, insert, Unlock(block)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("before:", res.Before, "after:", res.After)
	_ = nodes["2"].WaitHeight(ctx, res.Block.Height) // the block rides on the release
	b, _ := nodes["2"].Balance("1")                  // local, no lock
	fmt.Println("node 2 sees client 1 with", b)

	id, _ := ledger.ParseTransferID("0123456789abcdef0123456789abcdef")
	_, err = nodes["1"].TransferWithID(ctx, id, "2", 8)
	fmt.Println(err)
	fmt.Println("heads agree:", nodes["1"].Head().Hash == nodes["2"].Head().Hash)
	// Output:
	// before: map[1:10 2:10] after: map[1:7 2:13]
	// node 2 sees client 1 with 7
	// ledger: transfer 0123456789abcdef0123456789abcdef: insufficient funds: 1 has 7, needs 8
	// heads agree: true
}
