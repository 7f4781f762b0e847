package ledger_test

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// cluster is an in-test stand-in for lamportmutex: one real mutual
// exclusion among several in-process nodes, which delivers each Unlock
// payload synchronously to every other node's HandleRelease before the
// next Lock is granted.
type cluster struct {
	sem chan struct{} // holds one token while the lock is held

	mu          sync.Mutex
	clock       uint64
	holder      string
	nodes       map[string]*ledger.Node
	errs        []error  // HandleRelease errors, as a mutex would log them
	quarantined []string // "i quarantines j", by Locker.Quarantine
	locks       int
	unlocks     int

	// With rng set, a release reaches its bystanders late: payloads wait in
	// per-pair FIFO queues (receiver -> sender -> payloads) and are handed
	// over in random order across senders, but always all of them before
	// the receiver is granted the lock, as the Lamport mutex guarantees.
	// rng and queues are used only by the holder of sem.
	rng    *rand.Rand
	queues map[string]map[string][][]byte
}

// reorder makes releases reach bystanders late and out of order across
// senders (see cluster.rng).
func (c *cluster) reorder(seed uint64) {
	c.rng = rand.New(rand.NewPCG(seed, 7))
	c.queues = make(map[string]map[string][][]byte)
}

// deliver hands receiver up to max queued payloads (all if max < 0),
// choosing the sender at random each time. The caller holds sem.
func (c *cluster) deliver(receiver string, max int) {
	for ; max != 0; max-- {
		q := c.queues[receiver]
		senders := slices.Sorted(maps.Keys(q))
		if len(senders) == 0 {
			return
		}
		from := senders[c.rng.IntN(len(senders))]
		payload := q[from][0]
		if q[from] = q[from][1:]; len(q[from]) == 0 {
			delete(q, from)
		}
		c.mu.Lock()
		n := c.nodes[receiver]
		c.mu.Unlock()
		if err := n.HandleRelease(from, payload); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}
	}
}

// flush delivers every queued payload.
func (c *cluster) flush() {
	c.sem <- struct{}{}
	defer func() { <-c.sem }()
	if c.rng == nil {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(c.queues)) {
		c.deliver(id, -1)
	}
}

func newCluster() *cluster {
	return &cluster{sem: make(chan struct{}, 1), nodes: make(map[string]*ledger.Node)}
}

var errNotHeld = errors.New("fake locker: not held")

// fakeLocker is one member's view of the cluster's mutex.
type fakeLocker struct {
	c  *cluster
	id string
}

func (l *fakeLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	select {
	case l.c.sem <- struct{}{}:
	case <-ctx.Done():
		return lamportmutex.Token{}, ctx.Err()
	}
	if l.c.rng != nil {
		l.c.deliver(l.id, -1) // the new holder has every earlier release
	}
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.clock++
	l.c.holder = l.id
	l.c.locks++
	return lamportmutex.Token{Clock: l.c.clock, ID: l.id}, nil
}

// Send is never called: the fake cluster reports no PeerUp, so no node
// catches up.
func (l *fakeLocker) Send(string, []byte) error { return errNoPeers }

// errNoPeers is what test lockers answer to Send.
var errNoPeers = errors.New("test locker: no catch-up channel")

// Quarantine records the peer, as the mutex would quarantine it.
func (l *fakeLocker) Quarantine(peer string, cause error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.quarantined = append(l.c.quarantined, l.id+" quarantines "+peer)
}

func (l *fakeLocker) Unlock(payload []byte) error {
	c := l.c
	c.mu.Lock()
	if c.holder != l.id {
		c.mu.Unlock()
		return errNotHeld
	}
	var others []*ledger.Node
	for _, id := range slices.Sorted(maps.Keys(c.nodes)) {
		if id != l.id {
			others = append(others, c.nodes[id])
		}
	}
	c.mu.Unlock()
	if c.rng != nil && len(payload) > 0 {
		for _, n := range others {
			q := c.queues[n.ID()]
			if q == nil {
				q = make(map[string][][]byte)
				c.queues[n.ID()] = q
			}
			q[l.id] = append(q[l.id], payload)
		}
		for _, n := range others {
			c.deliver(n.ID(), c.rng.IntN(3))
		}
		others = nil
	}
	for _, n := range others {
		if err := n.HandleRelease(l.id, payload); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.holder = ""
	c.unlocks++
	c.mu.Unlock()
	<-c.sem
	return nil
}

func (c *cluster) errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

func (c *cluster) counts() (locks, unlocks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.locks, c.unlocks
}

func memberIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return ids
}

// newTestCluster builds n nodes ("1".."n") over a cluster, with stores made
// by mkStore (nil: in memory).
func newTestCluster(t testing.TB, n int, mkStore func(id string, g ledger.Block) ledger.Store) (*cluster, []*ledger.Node) {
	t.Helper()
	c := newCluster()
	members := memberIDs(n)
	g, err := ledger.NewGenesis(members, ledger.DefaultInitialBalance, testPub)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*ledger.Node, n)
	for i, id := range members {
		cfg := ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(members, 0)}
		if mkStore != nil {
			cfg.Store = mkStore(id, g)
		}
		node, err := ledger.NewUnwired(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := node.SetLocker(&fakeLocker{c: c, id: id}); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.nodes[id] = node
		c.mu.Unlock()
		nodes[i] = node
		t.Cleanup(func() { _ = node.Close(context.Background()) })
	}
	return c, nodes
}

func total(t testing.TB, b ledger.Balances) int64 {
	t.Helper()
	sum, ok := b.Total()
	if !ok {
		t.Fatal("total overflows")
	}
	return sum
}

// *lamportmutex.Mutex is the Locker a Node uses in production.
var _ ledger.Locker = (*lamportmutex.Mutex)(nil)

// testPub holds the public test keys of members "1" to "16", enough for
// any test's genesis.
var testPub = ledger.TestPubKeys(memberIDs(16)...)

// nextSealed is Chain.Next, sealed with the test key of t.From.
func nextSealed(c *ledger.Chain, t ledger.Transfer, clock uint64) (ledger.Block, error) {
	b, err := c.Next(t, clock)
	if err != nil {
		return ledger.Block{}, err
	}
	return b.Seal(ledger.TestKey(t.From)), nil
}
