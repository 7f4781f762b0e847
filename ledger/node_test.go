package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
	"go.uber.org/goleak"
)

func TestNodeTransfer(t *testing.T) {
	c, nodes := newTestCluster(t, 3, nil)
	ctx := context.Background()
	res, err := nodes[0].Transfer(ctx, "2", 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Before["1"] != 10 || res.After["1"] != 6 || res.After["2"] != 14 || res.Block.Height != 1 || res.Duplicate {
		t.Fatalf("result %+v", res)
	}
	for _, n := range nodes {
		if b, _ := n.Balance("1"); b != 6 {
			t.Fatalf("node %s: balance of 1 is %d", n.ID(), b)
		}
		if n.Head().Hash != res.Block.Hash {
			t.Fatalf("node %s: head %v", n.ID(), n.Head())
		}
	}
	if res.Block.Clock != 1 {
		t.Fatalf("block clock %d, want the token's 1", res.Block.Clock)
	}
	if errs := c.errors(); len(errs) != 0 {
		t.Fatal(errs)
	}
}

func TestNodeInsufficientFunds(t *testing.T) {
	c, nodes := newTestCluster(t, 2, nil)
	_, err := nodes[0].Transfer(context.Background(), "2", 11)
	if !errors.Is(err, ledger.ErrInsufficientFunds) || !strings.Contains(err.Error(), "has 10") {
		t.Fatalf("err = %v", err)
	}
	if l, u := c.counts(); l != 1 || u != 1 {
		t.Fatalf("locks %d, unlocks %d", l, u)
	}
	if nodes[1].Head().Height != 0 {
		t.Fatal("a refused transfer made a block")
	}
}

func TestNodeBadInput(t *testing.T) {
	c, nodes := newTestCluster(t, 3, nil)
	n := nodes[0]
	ctx := context.Background()
	cases := []struct {
		tr   ledger.Transfer
		want error
	}{
		{ledger.Transfer{To: "9", Amount: 1}, ledger.ErrUnknownClient},
		{ledger.Transfer{To: "2", Amount: 0}, ledger.ErrInvalidAmount},
		{ledger.Transfer{To: "2", Amount: -5}, ledger.ErrInvalidAmount},
		{ledger.Transfer{To: "1", Amount: 1}, ledger.ErrSelfTransfer},
		{ledger.Transfer{From: "2", To: "3", Amount: 1}, ledger.ErrNotOwner},
		{ledger.Transfer{From: "7", To: "3", Amount: 1}, ledger.ErrUnknownClient},
	}
	for _, tc := range cases {
		if _, err := n.Submit(ctx, tc.tr); !errors.Is(err, tc.want) {
			t.Errorf("%v: err = %v, want %v", tc.tr, err, tc.want)
		}
	}
	if _, err := n.Transfer(ctx, "2", 0); !errors.Is(err, ledger.ErrInvalidAmount) {
		t.Errorf("Transfer amount 0: %v", err)
	}
	if l, _ := c.counts(); l != 0 {
		t.Fatalf("bad input took the mutex %d times", l)
	}
	if n.Head().Height != 0 {
		t.Fatal("bad input wrote a block")
	}
}

// TestNodeClose checks one Close for everything the node owns: the
// second returns nil, and a transfer after it ErrClosed.
func TestNodeClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 0)
	net, err := transport.NewChanNetwork(memberIDs(2), transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close(context.Background())
	ep, _ := net.Endpoint("1")
	n, err := ledger.NewNode(ledger.Config{ID: "1", Genesis: g, Signer: ledger.TestKey("1")}, ep)
	if err != nil {
		t.Fatal(err)
	}
	// Peer 2 never comes up, so what node 1 sent is never delivered: Close
	// gives up on it when its ctx ends, and still closes everything. The
	// HELLO goes out after NewNode returns; a Close before it has nothing
	// to wait for.
	waitFor(t, "HELLO sent to 2", func() bool { return n.LockStats().Sent[lamportmutex.Hello] > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a peer that never came up: %v, want the ctx's deadline", err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Transfer(context.Background(), "2", 1); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("after Close: err = %v", err)
	}
	if err := ep.Send(lamportmutex.Message{Kind: lamportmutex.Data, From: "1", To: "2"}); err == nil {
		t.Fatal("the node's transport still sends after Close")
	}
}

// TestNewNodeErrors checks NewNode's refusals, and that it closes the
// transport and the store it was given when it fails.
func TestNewNodeErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := ledger.GenesisForTest(memberIDs(2), 0)
	other, _ := ledger.NewGenesis(memberIDs(2), 5, testPub)
	otherStore, _ := ledger.NewMemStore(other)
	for _, tc := range []struct {
		name string
		cfg  ledger.Config
		want error
	}{
		{"own id not a member", ledger.Config{ID: "9", Genesis: g, Signer: ledger.TestKey("9")}, ledger.ErrUnknownClient},
		{"no genesis", ledger.Config{ID: "1", Signer: ledger.TestKey("1")}, ledger.ErrBadGenesis},
		{"another member's key", ledger.Config{ID: "1", Genesis: g, Signer: ledger.TestKey("2")}, ledger.ErrBadKey},
		{"store of another ledger", ledger.Config{ID: "1", Genesis: g, Signer: ledger.TestKey("1"), Store: otherStore}, ledger.ErrGenesisMismatch},
	} {
		net, err := transport.NewChanNetwork(memberIDs(2), transport.ChanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ep, _ := net.Endpoint("1")
		if _, err := ledger.NewNode(tc.cfg, ep); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if err := ep.Start(func(lamportmutex.Message) {}); err == nil {
			t.Errorf("%s: the transport is still open after NewNode failed", tc.name)
		}
		_ = net.Close(context.Background())
	}
	if err := otherStore.Append(); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("the store is still open after NewNode failed: %v", err)
	}
}

func TestNodeIdempotent(t *testing.T) {
	_, nodes := newTestCluster(t, 2, nil)
	ctx := context.Background()
	id := ledger.NewTransferID()
	first, err := nodes[0].TransferWithID(ctx, id, "2", 3)
	if err != nil {
		t.Fatal(err)
	}
	again, err := nodes[0].TransferWithID(ctx, id, "2", 3)
	if err != nil || !again.Duplicate || again.Block.Hash != first.Block.Hash {
		t.Fatalf("repeat: %+v, %v", again, err)
	}
	if b, _ := nodes[1].Balance("2"); b != 13 {
		t.Fatalf("balance of 2 is %d: applied twice?", b)
	}
	if _, err := nodes[0].TransferWithID(ctx, id, "2", 4); !errors.Is(err, ledger.ErrTransferIDConflict) {
		t.Fatalf("same id, other amount: %v", err)
	}
	// A refusal is remembered too, even when funds would now suffice.
	poor := ledger.NewTransferID()
	_, err1 := nodes[0].TransferWithID(ctx, poor, "2", 8)
	if _, err := nodes[1].Transfer(ctx, "1", 10); err != nil {
		t.Fatal(err)
	}
	_, err2 := nodes[0].TransferWithID(ctx, poor, "2", 8)
	if !errors.Is(err1, ledger.ErrInsufficientFunds) || err2 == nil || err1.Error() != err2.Error() {
		t.Fatalf("refused id repeated: %v, then %v", err1, err2)
	}
	// Another node cannot reuse an ID seen in a received block.
	if _, err := nodes[1].TransferWithID(ctx, id, "1", 3); !errors.Is(err, ledger.ErrTransferIDConflict) {
		t.Fatalf("id from a received block: %v", err)
	}
}

func TestNodeIdempotentConcurrent(t *testing.T) {
	c, nodes := newTestCluster(t, 3, nil)
	id := ledger.NewTransferID()
	const callers = 16
	results := make([]ledger.Result, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = nodes[0].TransferWithID(context.Background(), id, "3", 2)
		}()
	}
	wg.Wait()
	fresh := 0
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].Block.Hash != results[0].Block.Hash {
			t.Fatal("callers saw different blocks")
		}
		if !results[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d callers applied the transfer, want 1", fresh)
	}
	for _, n := range nodes {
		if h := n.Head().Height; h != 1 {
			t.Fatalf("node %s has height %d, want 1", n.ID(), h)
		}
	}
	if l, _ := c.counts(); l != 1 {
		t.Fatalf("mutex taken %d times, want 1", l)
	}
}

// Concurrent random transfers from every node end with identical, verified
// chains and conserved money.
func TestNodesConcurrentRandom(t *testing.T) {
	for _, n := range []int{3, 8} {
		t.Run(fmt.Sprint(n, "nodes"), func(t *testing.T) {
			dir := t.TempDir()
			c, nodes := newTestCluster(t, n, func(id string, g ledger.Block) ledger.Store {
				if id != "1" { // one durable replica, the rest in memory
					st, _ := ledger.NewMemStore(g)
					return st
				}
				st, err := ledger.OpenFileStore(filepath.Join(dir, id+".log"), g, ledger.FileOptions{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				return st
			})
			c.reorder(uint64(n))
			const perNode = 100
			var wg sync.WaitGroup
			committed := make([]int, n)
			for i, node := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(i), uint64(n)))
					for range perNode {
						to := memberIDs(n)[rng.IntN(n)]
						if to == node.ID() {
							continue
						}
						_, err := node.Transfer(context.Background(), to, 1+rng.Int64N(6))
						switch {
						case err == nil:
							committed[i]++
						case errors.Is(err, ledger.ErrInsufficientFunds):
						default:
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			c.flush()
			if errs := c.errors(); len(errs) != 0 {
				t.Fatal(errs)
			}
			sum := 0
			for _, k := range committed {
				sum += k
			}
			head := nodes[0].Head()
			if int(head.Height) != sum {
				t.Fatalf("head height %d, committed %d", head.Height, sum)
			}
			for _, node := range nodes {
				if node.Head().Hash != head.Hash {
					t.Fatalf("node %s head %v differs from %v", node.ID(), node.Head(), head)
				}
				if err := node.Verify(); err != nil {
					t.Fatalf("node %s: %v", node.ID(), err)
				}
				if got := total(t, node.Balances()); got != int64(n)*ledger.DefaultInitialBalance {
					t.Fatalf("node %s: total %d", node.ID(), got)
				}
			}
			// The durable replica reopens to the same head.
			if err := nodes[0].Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			st, err := ledger.OpenFileStore(filepath.Join(dir, "1.log"), nodes[0].Genesis(), ledger.FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			re, err := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(n), 0), Store: st})
			if err != nil {
				t.Fatal(err)
			}
			defer re.Close(context.Background())
			if re.Head().Hash != head.Hash {
				t.Fatal("reopened node has another head")
			}
		})
	}
}

// A release with bad input is refused and its sender blamed; the node keeps
// working, and takes the peer's good blocks after it.
func TestNodeRefusesBadRelease(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	chain, _ := ledger.NewChain(g)
	good, _ := nextSealed(chain, ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "1", Amount: 3}, 5)
	encode := func(b ledger.Block) []byte { p, _ := ledger.EncodeBatch([]ledger.Block{b}); return p }
	rehash := func(b ledger.Block) ledger.Block {
		b.Hash = b.ComputeHash()
		return b.Seal(ledger.TestKey(b.Transfer.From))
	}
	badHash := good
	badHash.Hash[0] ^= 1
	tooMuch := good
	tooMuch.Transfer.Amount = 11
	stranger := good
	stranger.Transfer.To = "9"
	cases := map[string]struct {
		from    string
		payload []byte
		want    error
	}{
		"garbage":  {"2", []byte("not a block"), ledger.ErrMalformedBlock},
		"hash":     {"2", encode(badHash), ledger.ErrBadHash},
		"prev":     {"2", encode(rehash(ledger.Block{Height: 1, Clock: 5, Transfer: good.Transfer})), ledger.ErrBadPrev},
		"funds":    {"2", encode(rehash(tooMuch)), ledger.ErrInsufficientFunds},
		"member":   {"2", encode(rehash(stranger)), ledger.ErrUnknownClient},
		"not mine": {"3", encode(good), ledger.ErrNotOwner},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var (
				mu     sync.Mutex
				events []ledger.Event
			)
			n, err := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(3), 0), OnEvent: func(e ledger.Event) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, e)
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close(context.Background())
			if err := n.SetLocker(&fakeLocker{c: newCluster(), id: "1"}); err != nil {
				t.Fatal(err)
			}
			err = n.HandleRelease(tc.from, tc.payload)
			if !errors.Is(err, ledger.ErrPeerRefused) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "peer "+tc.from) {
				t.Fatalf("err = %v, want a refusal of peer %s for %v", err, tc.from, tc.want)
			}
			if err := n.Err(); err != nil {
				t.Fatalf("the node stopped for a peer's bad input: %v", err)
			}
			if n.Head().Height != 0 {
				t.Fatal("bad block inserted")
			}
			// The node commits its own transfers; the peer's next release is
			// refused until it restarts; then its good block goes in.
			if _, err := n.Transfer(context.Background(), "3", 1); err != nil {
				t.Fatalf("Transfer after the refusal: %v", err)
			}
			if err := n.HandleRelease(tc.from, nil); err != nil {
				t.Fatalf("empty release: %v", err)
			}
			next := rehash(ledger.Block{Height: 2, Prev: n.Head().Hash, Clock: 9,
				Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: tc.from, To: "1", Amount: 3}})
			if err := n.HandleRelease(tc.from, encode(next)); !errors.Is(err, ledger.ErrPeerRefused) {
				t.Fatalf("good block from the quarantined incarnation: %v", err)
			}
			n.HandlePeerUp(tc.from)
			if err := n.HandleRelease(tc.from, encode(next)); err != nil || n.Head().Hash != next.Hash {
				t.Fatalf("good block from the next incarnation: %v", err)
			}
			if err := n.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(events) == 0 || events[0].Kind != ledger.EventPeerRefused || events[0].From != tc.from || !errors.Is(events[0].Err, tc.want) {
				t.Fatalf("events %v, want a peer-refused first", events)
			}
			for _, e := range events[1:] {
				if e.Kind == ledger.EventFailed || e.Kind == ledger.EventPeerRefused {
					t.Fatalf("event %v after the refusal", e)
				}
			}
		})
	}
}

// Releases from different peers may arrive out of order: a block ahead of
// a gap waits for it. A second block of a peer's own making, for a height
// at which the node has its first, is refused; a second block held for one
// height waits for the chain to decide; a held block that does not extend
// the same peer's block before it is refused.
func TestNodeReceiveOutOfOrder(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	chain, _ := ledger.NewChain(g)
	var payloads [][]byte
	for i, from := range []string{"2", "3", "2", "3"} {
		b, err := nextSealed(chain, ledger.Transfer{ID: ledger.NewTransferID(), From: from, To: "1", Amount: 1}, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		_ = chain.Append(b)
		p, _ := ledger.EncodeBatch([]ledger.Block{b})
		payloads = append(payloads, p)
	}
	newNode := func() *ledger.Node {
		n, err := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(3), 0)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close(context.Background()) })
		return n
	}

	n := newNode()
	for _, i := range []int{1, 3} { // heights 2 and 4, from 3, ahead of the gaps
		if err := n.HandleRelease("3", payloads[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n.Head().Height != 0 {
		t.Fatal("a block ahead of a gap was inserted")
	}
	if err := n.HandleRelease("2", payloads[0]); err != nil {
		t.Fatal(err)
	}
	if h := n.Head().Height; h != 2 {
		t.Fatalf("head %d after filling the first gap, want 2", h)
	}
	if err := n.HandleRelease("2", payloads[2]); err != nil {
		t.Fatal(err)
	}
	if n.Head().Hash != chain.Head().Hash || n.Verify() != nil {
		t.Fatalf("head %v, want %v", n.Head(), chain.Head())
	}

	// A block it has already (catch-up may bring it before the release)
	// is skipped.
	if err := n.HandleRelease("2", payloads[0]); err != nil || n.Err() != nil {
		t.Fatalf("a block again: %v, node error %v", err, n.Err())
	}
	// Another block of the releasing peer's making, at a height the node
	// has: the peer equivocated. It is refused; the node keeps its chain.
	other, _ := ledger.NewChain(g)
	b1, _ := nextSealed(other, ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "1", Amount: 2}, 1)
	_ = other.Append(b1)
	p1, _ := ledger.EncodeBatch([]ledger.Block{b1})
	if err := n.HandleRelease("2", p1); !errors.Is(err, ledger.ErrPeerRefused) || n.Err() != nil || n.Head().Hash != chain.Head().Hash {
		t.Fatalf("another block at height 1: %v, node error %v", err, n.Err())
	}

	// Two blocks for one future height: the first is kept, and the chain
	// decides once the gap fills.
	n = newNode()
	b2, _ := nextSealed(other, ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "3", Amount: 2}, 2)
	p2, _ := ledger.EncodeBatch([]ledger.Block{b2})
	if err := n.HandleRelease("3", payloads[1]); err != nil {
		t.Fatal(err)
	}
	if err := n.HandleRelease("2", p2); err != nil || n.Err() != nil {
		t.Fatalf("second block for height 2: %v, node error %v", err, n.Err())
	}
	if err := n.HandleRelease("2", payloads[0]); err != nil || n.Head().Hash != ledger.ChainBlocks(chain)[2].Hash {
		t.Fatalf("gap filled: %v, head %v", err, n.Head())
	}

	// A held block that turns out not to extend the chain is refused when
	// the gap is filled; the node goes on.
	n = newNode()
	if err := n.HandleRelease("2", p2); err != nil { // height 2 on another block 1
		t.Fatal(err)
	}
	if err := n.HandleRelease("2", payloads[0]); !errors.Is(err, ledger.ErrBadPrev) || !errors.Is(err, ledger.ErrPeerRefused) || n.Err() != nil {
		t.Fatalf("held block on another predecessor: %v, node error %v", err, n.Err())
	}
	if n.Head().Height != 1 {
		t.Fatalf("head %d, want 1", n.Head().Height)
	}
}

// A node granted the mutex while a block still waits for an earlier one
// drops it (no holder made the block it waits for: every earlier holder's
// release has arrived) and builds on its chain.
func TestNodeDropsHeldBlocksAtGrant(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	chain, _ := ledger.NewChain(g)
	b1, _ := nextSealed(chain, ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "1", Amount: 1}, 1)
	_ = chain.Append(b1)
	b2, _ := nextSealed(chain, ledger.Transfer{ID: ledger.NewTransferID(), From: "3", To: "1", Amount: 1}, 2)
	p2, _ := ledger.EncodeBatch([]ledger.Block{b2})
	n, _ := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(3), 0)})
	defer n.Close(context.Background())
	l := &badLocker{}
	_ = n.SetLocker(l)
	if err := n.HandleRelease("3", p2); err != nil {
		t.Fatal(err)
	}
	res, err := n.Transfer(context.Background(), "2", 1)
	if err != nil || res.Block.Height != 1 {
		t.Fatalf("Transfer: %+v, %v", res, err)
	}
	if len(l.unlocked) != 1 || l.unlocked[0] == nil || n.Err() != nil {
		t.Fatalf("released %d times, node error %v", len(l.unlocked), n.Err())
	}
}

func TestNodeEmptyReleaseIsNoop(t *testing.T) {
	n, _ := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(2), 0)})
	defer n.Close(context.Background())
	if err := n.HandleRelease("2", nil); err != nil || n.Err() != nil {
		t.Fatalf("empty payload: %v, %v", err, n.Err())
	}
}

// failingStore fails every Append.
type failingStore struct{ ledger.Store }

func (failingStore) Append(...ledger.Block) error { return errors.New("disk full") }

// A failure after Lock still releases the mutex, with no payload.
func TestNodeStoreFailureReleases(t *testing.T) {
	c, nodes := newTestCluster(t, 2, func(id string, g ledger.Block) ledger.Store {
		st, _ := ledger.NewMemStore(g)
		if id == "1" {
			return failingStore{st}
		}
		return st
	})
	_, err := nodes[0].Transfer(context.Background(), "2", 1)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
	if l, u := c.counts(); l != 1 || u != 1 {
		t.Fatalf("locks %d, unlocks %d", l, u)
	}
	if nodes[0].Head().Height != 0 || nodes[1].Head().Height != 0 {
		t.Fatal("a block that was not persisted was inserted")
	}
	// A received block that cannot be persisted stops the node; the peer is
	// not blamed.
	if _, err := nodes[1].Transfer(context.Background(), "1", 1); err != nil {
		t.Fatal(err)
	}
	if errs := c.errors(); len(errs) != 0 {
		t.Fatalf("the node's own failure was blamed on the peer: %v", errs)
	}
	if err := nodes[0].Err(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("node 1 did not fail: %v", err)
	}
}

// badLocker fails as told.
type badLocker struct {
	lockErr, unlockErr error
	unlocked           [][]byte
}

func (l *badLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	return lamportmutex.Token{Clock: 1, ID: "1"}, l.lockErr
}

func (l *badLocker) Send(string, []byte) error { return errNoPeers }

func (l *badLocker) Quarantine(string, error) {}

func (l *badLocker) Unlock(p []byte) error {
	l.unlocked = append(l.unlocked, p)
	return l.unlockErr
}

func TestNodeLockerErrors(t *testing.T) {
	n, _ := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(memberIDs(2), 0)})
	defer n.Close(context.Background())
	l := &badLocker{lockErr: context.Canceled}
	_ = n.SetLocker(l)
	id := ledger.NewTransferID()
	if _, err := n.TransferWithID(context.Background(), id, "2", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock error: %v", err)
	}
	if len(l.unlocked) != 0 {
		t.Fatal("unlocked a mutex that was not taken")
	}
	// A failed Lock is not an outcome: the same ID can be retried.
	l.lockErr, l.unlockErr = nil, errors.New("mutex closed")
	res, err := n.TransferWithID(context.Background(), id, "2", 1)
	if !errors.Is(err, ledger.ErrDiverged) || res.Block.Height != 1 {
		t.Fatalf("unlock error after commit: %+v, %v", res, err)
	}
	if n.Err() == nil || len(l.unlocked) != 1 || l.unlocked[0] == nil {
		t.Fatalf("node not failed (%v) or payload not released", n.Err())
	}
}

func TestNodeEvents(t *testing.T) {
	var (
		mu     sync.Mutex
		events = map[string][]string{}
	)
	c := newCluster()
	members := memberIDs(2)
	var nodes []*ledger.Node
	for _, id := range members {
		n, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(members, 0), OnEvent: func(e ledger.Event) {
			mu.Lock()
			defer mu.Unlock()
			events[id] = append(events[id], fmt.Sprintf("%s:%s", e.Kind, e.From))
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close(context.Background())
		_ = n.SetLocker(&fakeLocker{c: c, id: id})
		c.nodes[id] = n
		nodes = append(nodes, n)
	}
	if _, err := nodes[0].Transfer(context.Background(), "2", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Transfer(context.Background(), "2", 100); err == nil {
		t.Fatal("overdraft succeeded")
	}
	for _, n := range nodes {
		if err := n.Close(context.Background()); err != nil { // delivers what is queued
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for id, want := range map[string]string{
		"1": "lock-granted: block-inserted:1 lock-released: transfer-committed: lock-granted: lock-released: transfer-rejected:",
		"2": "block-inserted:1",
	} {
		if got := strings.Join(events[id], " "); got != want {
			t.Fatalf("events of %s\n got %s\nwant %s", id, got, want)
		}
	}
}

func TestNodeWaitHeight(t *testing.T) {
	_, nodes := newTestCluster(t, 2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- nodes[1].WaitHeight(context.Background(), 1) }()
	if _, err := nodes[0].Transfer(context.Background(), nodes[1].ID(), 3); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitHeight(1) = %v", err)
	}
	go func() { done <- nodes[1].WaitHeight(ctx, 5) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitHeight after cancel = %v", err)
	}
	go func() { done <- nodes[0].WaitHeight(context.Background(), 5) }()
	if err := nodes[0].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("WaitHeight after Close = %v", err)
	}
}

// TestNodeRefusalsBounded checks that a node remembers its newest
// IDWindow refusals and no more: a refused ID is refused again from
// memory while it is among them, and judged afresh once it is not.
func TestNodeRefusalsBounded(t *testing.T) {
	_, nodes := newTestCluster(t, 2, nil)
	ctx := context.Background()
	first := ledger.NewTransferID()
	if _, err := nodes[0].TransferWithID(ctx, first, "2", 11); !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Fatal(err)
	}
	for range ledger.IDWindow - 1 {
		if _, err := nodes[0].Transfer(ctx, "2", 11); !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Fatal(err)
		}
	}
	if _, err := nodes[1].Transfer(ctx, "1", 5); err != nil { // now 1 could pay 11
		t.Fatal(err)
	}
	if _, err := nodes[0].TransferWithID(ctx, first, "2", 11); !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Fatalf("a refusal among the newest IDWindow was not remembered: %v", err)
	}
	if _, err := nodes[0].Transfer(ctx, "2", 100); !errors.Is(err, ledger.ErrInsufficientFunds) { // pushes first out
		t.Fatal(err)
	}
	if _, err := nodes[0].TransferWithID(ctx, first, "2", 11); err != nil {
		t.Fatalf("a refusal older than the newest IDWindow was still remembered: %v", err)
	}
}
