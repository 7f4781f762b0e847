package ledger_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// byzLocker is node 1's mutex in FuzzByzantinePeer: it grants at once,
// answers every sync round for the honest peers (with node 1's own head,
// which they share), and reports barrier answers.
type byzLocker struct {
	n       *ledger.Node
	barrier chan uint64 // rounds of answers node 1 sent to "3"

	mu    sync.Mutex
	clock uint64
	sem   chan struct{}

	quarantined3 atomic.Bool // the honest peer "3" was quarantined
}

func (l *byzLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return lamportmutex.Token{}, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clock++
	return lamportmutex.Token{Clock: l.clock, ID: "1"}, nil
}

func (l *byzLocker) Unlock([]byte) error { <-l.sem; return nil }

func (l *byzLocker) Quarantine(peer string, _ error) {
	if peer == "3" {
		l.quarantined3.Store(true)
	}
}

func (l *byzLocker) Send(to string, p []byte) error {
	if len(p) != 83 || p[0] != 'S' {
		return nil
	}
	round := binary.BigEndian.Uint64(p[3:])
	switch {
	case p[2] == 1 && round != 0: // a sync round's question: the peer answers
		head := l.n.Head()
		_ = l.n.HandleMessage(to, headMsgOf(l.n.Genesis().Hash, 2, round, head.Height, head.Hash))
	case p[2] == 2 && to == "3":
		l.barrier <- round
	}
	return nil
}

// fuzzReader hands out the fuzzer's bytes; past the end it gives zeros.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) done() bool { return len(r.b) == 0 }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return out
}

func (r *fuzzReader) u64() uint64 {
	var v [8]byte
	copy(v[:], r.bytes(8))
	return binary.BigEndian.Uint64(v[:])
}

// extreme picks a number near an edge, or any.
func (r *fuzzReader) extreme(near uint64) uint64 {
	switch r.byte() % 10 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return math.MaxUint64
	case 3:
		return 1 << 63
	case 4:
		return 1<<63 + 1
	case 5:
		return near
	case 6:
		return near + 1
	case 7:
		return near + ledger.MaxPending + 1
	case 8:
		return near - 1
	}
	return r.u64()
}

// FuzzByzantinePeer plays member "2" against a real node "1" (members 1,
// 2, 3): the input is a sequence of releases, catch-up messages and
// restarts from "2", crafted blocks and heads among them, with clocks,
// heights, amounts and rounds pushed to their extremes, interleaved with
// honest transfers of node 1. "2" holds its own signing key only: it seals
// what it likes with it (its own blocks, others' blocks, the wrong hash),
// and besides sends blocks unsealed, with random or misshapen seals, or
// with a seal copied from node 1's genuine blocks, and relays node 1's
// genuine blocks. The honest member "3" relays blocks that "2" sealed,
// valid where they stand. After every step: the node has not stopped,
// unless "3" relayed a second block of "2"'s for a height at which node 1
// has one of "2"'s on the same predecessor (then the run ends), its chain
// verifies, balances are conserved and never negative, no block spends
// from a member that did not make it, and "3" was never refused; at the
// end an honest transfer commits.
func FuzzByzantinePeer(f *testing.F) {
	for _, seed := range byzantineSeeds() {
		f.Add(seed)
	}
	f.Fuzz(byzantineRun)
}

func byzantineRun(t *testing.T, data []byte) {
	{
		const balance = 100
		members := memberIDs(3)
		var refused3 atomic.Bool
		n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(members, balance), Signer: ledger.TestKey("1"), OnEvent: func(e ledger.Event) {
			if e.Kind == ledger.EventPeerRefused && e.From == "3" {
				refused3.Store(true)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close(context.Background())
		byzKey := ledger.TestKey("2") // the only key the faulty member has
		var hmu sync.Mutex
		honest := map[ledger.Hash]bool{} // blocks node 1 made
		l := &byzLocker{n: n, barrier: make(chan uint64, 16), sem: make(chan struct{}, 1)}
		if err := n.SetLocker(l); err != nil {
			t.Fatal(err)
		}
		barrierRound := uint64(0)
		settle := func() { // waits until node 1 handled every catch-up message so far
			barrierRound++
			g := n.Genesis()
			_ = n.HandleMessage("3", headMsgOf(g.Hash, 1, barrierRound, 0, g.Hash))
			for r := range l.barrier {
				if r == barrierRound {
					return
				}
			}
		}
		transfer := func() {
			n.HandlePeerUp("2") // the faulty member's next incarnation is heard again
			before, _ := n.Balance("1")
			res, err := n.Transfer(context.Background(), "3", 1)
			switch {
			case before >= 1 && err != nil:
				t.Fatalf("honest transfer with balance %d: %v", before, err)
			case before < 1 && !errors.Is(err, ledger.ErrInsufficientFunds):
				t.Fatalf("honest transfer with balance %d: %v, want insufficient funds", before, err)
			case err == nil:
				hmu.Lock()
				honest[res.Block.Hash] = true
				hmu.Unlock()
			}
		}
		// check reports whether the node stopped, as it must, for "2"'s two
		// blocks at one height, the second relayed by "3".
		check := func(step int) (stopped bool) {
			if refused3.Load() || l.quarantined3.Load() {
				t.Fatalf("step %d: the honest peer 3 was refused", step)
			}
			if err := n.Err(); err != nil {
				var ce *ledger.ConflictError
				if !errors.As(err, &ce) || ce.Ours.Transfer.From != "2" || ce.Theirs.Transfer.From != "2" || ce.Peer != "3" ||
					ce.Ours.Prev != ce.Theirs.Prev || ce.Ours.Hash == ce.Theirs.Hash {
					t.Fatalf("step %d: the node stopped: %v", step, err)
				}
				return true
			}
			if err := n.Verify(); err != nil {
				t.Fatalf("step %d: chain does not verify: %v", step, err)
			}
			bal := n.Balances()
			var sum int64
			for _, id := range members {
				if bal[id] < 0 {
					t.Fatalf("step %d: %s has %d", step, id, bal[id])
				}
				sum += bal[id]
			}
			if sum != 3*balance {
				t.Fatalf("step %d: total %d, want %d", step, sum, 3*balance)
			}
			hmu.Lock()
			defer hmu.Unlock()
			for _, b := range n.Blocks()[1:] {
				if b.Transfer.From != "2" && !honest[b.Hash] {
					t.Fatalf("step %d: block %d spends from %s, who did not make it", step, b.Height, b.Transfer.From)
				}
			}
			return false
		}

		r := &fuzzReader{b: data}
		var ids []ledger.TransferID
		craft := func(height uint64, prev ledger.Hash) ledger.Block {
			b := ledger.Block{Height: height, Prev: prev, Clock: r.extreme(height)}
			switch r.byte() % 6 {
			case 0:
				b.Prev = ledger.Hash{}
			case 1:
				copy(b.Prev[:], r.bytes(32))
			}
			from := []string{"2", "2", "2", "1", "3", "", "22"}
			to := []string{"1", "3", "2", "9", "1"}
			amount := []int64{1, 1, 0, -1, math.MaxInt64, math.MinInt64, balance, balance + 1, 7}
			id := ledger.NewTransferID()
			if k := int(r.byte()); k < len(ids) {
				id = ids[k] // a transfer ID already used
			}
			ids = append(ids, id)
			b.Transfer = ledger.Transfer{ID: id, From: from[int(r.byte())%len(from)], To: to[int(r.byte())%len(to)],
				Amount: amount[int(r.byte())%len(amount)]}
			b.Hash = b.ComputeHash()
			if r.byte()%8 == 0 {
				b.Hash[0] ^= 1
			}
			switch r.byte() % 8 {
			case 0, 1: // no seal: covered by a later one, or by none
			case 2, 3, 4:
				b = b.Seal(byzKey) // valid only on a block of its own with a true hash
			case 5:
				b.Sig = r.bytes(ledger.SigSize)
			case 6:
				b.Sig = r.bytes(int(r.byte()) % (2 * ledger.SigSize))
			case 7: // a seal of node 1's, from its chain
				blocks := n.Blocks()
				b.Sig = blocks[int(r.byte())%len(blocks)].Sig
			}
			return b
		}
		batch := func() []ledger.Block {
			head := n.Head()
			start := r.extreme(head.Height + 1)
			prev := head.Hash
			if start <= head.Height && start > 0 {
				prev = n.Blocks()[start-1].Hash
			}
			var blocks []ledger.Block
			for i := range 1 + int(r.byte()%4) {
				b := craft(start+uint64(i), prev)
				blocks = append(blocks, b)
				prev = b.Hash
			}
			return blocks
		}
		for step := 0; !r.done() && step < 64; step++ {
			switch r.byte() % 9 {
			case 0:
				_ = n.HandleRelease("2", r.bytes(int(r.byte())*8))
			case 1:
				_ = n.HandleMessage("2", r.bytes(int(r.byte())*8))
			case 2:
				n.HandlePeerUp("2")
			case 3:
				if p, err := ledger.EncodeBatch(batch()); err == nil {
					_ = n.HandleRelease("2", p)
				}
			case 4:
				op := []byte{1, 2, 4, 9}[r.byte()%4]
				head := n.Head()
				h := r.extreme(head.Height)
				hash := head.Hash
				if blk, ok := blockAt(n, h); ok && r.byte()%2 == 0 {
					hash = blk.Hash
				} else if r.byte()%2 == 0 {
					copy(hash[:], r.bytes(32))
				}
				_ = n.HandleMessage("2", headMsgOf(n.Genesis().Hash, op, r.extreme(0), h, hash))
			case 5:
				if p, err := ledger.EncodeBatch(batch()); err == nil {
					_ = n.HandleMessage("2", append([]byte{'S', 2, 3}, p...))
				}
			case 6:
				settle()
				transfer()
			case 7: // a genuine block of node 1, relayed
				blocks := n.Blocks()
				b := blocks[int(r.byte())%len(blocks)]
				if r.byte()%4 == 0 {
					b.Sig = nil // its seal stripped
				}
				if b.Height > 0 {
					p, _ := ledger.EncodeBatch([]ledger.Block{b})
					_ = n.HandleMessage("2", append([]byte{'S', 2, 3}, p...))
				}
			case 8: // "3" relays a block "2" sealed, valid where it stands
				settle()
				blocks := n.Blocks()
				h := 1 + r.u64()%uint64(len(blocks))
				if bal, _ := n.Balance("2"); bal < 1 {
					break
				}
				b := ledger.Block{Height: h, Prev: blocks[h-1].Hash, Clock: h,
					Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: []string{"1", "3"}[r.byte()%2], Amount: 1}}
				b.Hash = b.ComputeHash()
				_ = n.HandleMessage("3", catchUpBlocks(t, []ledger.Block{b.Seal(byzKey)}))
				settle()
			}
			if check(step) {
				return
			}
		}
		settle()
		if check(-1) {
			return
		}
		transfer()
		settle()
		check(-2)
	}
}

func blockAt(n *ledger.Node, h uint64) (ledger.Block, bool) {
	blocks := n.Blocks()
	if h >= uint64(len(blocks)) {
		return ledger.Block{}, false
	}
	return blocks[h], true
}

// byzantineSeeds are inputs that reach each kind of step.
func byzantineSeeds() [][]byte {
	var seeds [][]byte
	for op := range byte(9) {
		for v := range byte(4) {
			s := []byte{6, op}
			for i := range 24 {
				s = append(s, v*37+byte(i)*11)
			}
			seeds = append(seeds, append(s, 6, op, 5, 5, 5, 5, 5, 5, 5, 5))
		}
	}
	seeds = append(seeds, []byte(fmt.Sprint("false head ", 4, 0, 5, 9)))
	return seeds
}
