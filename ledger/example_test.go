package ledger_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// inProcessMutex stands in for lamportmutex in one process: a plain mutex
// whose Unlock hands the payload to every other node before the next Lock,
// as the real mutex's Handler does. (It ignores Lock's ctx.)
type inProcessMutex struct {
	mu    sync.Mutex
	clock uint64
	nodes map[string]*ledger.Node
}

type memberLock struct {
	m  *inProcessMutex
	id string
}

func (l memberLock) Lock(context.Context) (lamportmutex.Token, error) {
	l.m.mu.Lock()
	l.m.clock++
	return lamportmutex.Token{Clock: l.m.clock, ID: l.id}, nil
}

// Quarantine is for peers' bad input, which this in-process mutex never
// has.
func (l memberLock) Quarantine(string, error) {}

// Send is for catch-up after restarts, which this in-process mutex never
// has.
func (l memberLock) Send(string, []byte) error {
	return errors.New("no catch-up in this example")
}

func (l memberLock) Unlock(payload []byte) error {
	defer l.m.mu.Unlock()
	for id, n := range l.m.nodes {
		if id != l.id {
			if err := n.HandleRelease(l.id, payload); err != nil {
				return err
			}
		}
	}
	return nil
}

func ExampleNode_Transfer() {
	members := []string{"1", "2"}
	// Every member has an Ed25519 key pair; the genesis holds the public keys.
	keys := make(map[string]ed25519.PublicKey)
	signers := make(map[string]ed25519.PrivateKey)
	for _, id := range members {
		keys[id], signers[id], _ = ed25519.GenerateKey(nil)
	}
	m := &inProcessMutex{nodes: make(map[string]*ledger.Node)}
	for _, id := range members {
		node, err := ledger.NewNode(ledger.Config{ID: id, Members: members, Keys: keys, Signer: signers[id]})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer node.Close()
		m.nodes[id] = node
		// With lamportmutex: mu, err :=
		// lamportmutex.New(node.MutexConfig(lamportmutex.Config{...})), then
		// node.SetLocker(mu).
		if err := node.SetLocker(memberLock{m: m, id: id}); err != nil {
			fmt.Println(err)
			return
		}
	}
	ctx := context.Background()

	res, err := m.nodes["1"].Transfer(ctx, "2", 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("before:", res.Before, "after:", res.After)
	b, _ := m.nodes["2"].Balance("1")
	fmt.Println("node 2 sees client 1 with", b)

	id, _ := ledger.ParseTransferID("0123456789abcdef0123456789abcdef")
	_, err = m.nodes["1"].TransferWithID(ctx, id, "2", 8)
	fmt.Println(err)
	fmt.Println("heads agree:", m.nodes["1"].Head().Hash == m.nodes["2"].Head().Hash)
	// Output:
	// before: map[1:10 2:10] after: map[1:7 2:13]
	// node 2 sees client 1 with 7
	// ledger: transfer 0123456789abcdef0123456789abcdef: insufficient funds: 1 has 7, needs 8
	// heads agree: true
}
