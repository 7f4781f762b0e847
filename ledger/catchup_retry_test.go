package ledger

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// sends applies r's queued actions, continuations included, each
// succeeding unless refuse gives an error for it, and returns the catch-up
// messages sent, as "op to height" ("blocks to from-to" for blocks).
func sends(t *testing.T, r *replica, refuse func(action) error) []string {
	t.Helper()
	var out []string
	for len(r.out) > 0 {
		for _, a := range r.take() {
			var err error
			if refuse != nil {
				err = refuse(a)
			}
			switch {
			case a.kind == actSend && err == nil:
				m, derr := decodeSync(a.payload)
				if derr != nil {
					t.Fatal(derr)
				}
				out = append(out, fmt.Sprintf("%s %s %d", m.op, a.peer, m.height))
			case a.kind == actSendBlocks && err == nil:
				out = append(out, fmt.Sprintf("blocks %s %d-%d", a.peer, a.from, a.to))
			}
			if a.then != nil {
				a.then(err)
			}
		}
	}
	return out
}

// fetches runs r's catch-up goroutine's inbox once, as the Node's does, and
// returns what it sent.
func fetches(t *testing.T, r *replica) []string {
	t.Helper()
	if batch, fetch := r.takeInbox(); len(batch) > 0 || !fetch {
		t.Fatalf("takeInbox: %d queued, fetch %v", len(batch), fetch)
	}
	return sends(t, r, nil)
}

// tick fires r's retry timer, which must be running, and returns what it
// sent and whether a fetch is due.
func tick(t *testing.T, r *replica) ([]string, bool) {
	t.Helper()
	if !r.retryWanted() {
		t.Fatal("the retry timer does not run")
	}
	r.retryTick()
	out := sends(t, r, nil)
	return out, r.refetchDue
}

// A node that holds blocks ahead of a gap asks its peers for the blocks
// after its head once the gap has lasted a whole period of its retry
// timer, its head unmoved; a gap that fills, or a head that moves, asks
// nothing.
func TestGapThatLastsIsFetched(t *testing.T) {
	g := GenesisForTest([]string{"1", "2", "3"}, 0)
	maker, _ := testReplica(t, g, "2")
	first := commitOne(t, maker, "1", 1, 3)
	second := commitOne(t, maker, "1", 1, 5)
	third := commitOne(t, maker, "3", 1, 7)
	release := func(r *replica, blocks []Block) {
		t.Helper()
		var verdict error
		r.peerRelease("2", blocks, r.checkReceived("2", blocks, false), &verdict)
		settle(r)
		if verdict != nil {
			t.Fatal(verdict)
		}
	}

	r, _ := testReplica(t, g, "1")
	if r.retryWanted() {
		t.Fatal("the retry timer runs for a node that lacks nothing")
	}
	release(r, second) // block 1 is late
	if !r.retryWanted() {
		t.Fatal("no retry timer for a node with a block held ahead of a gap")
	}
	if out, due := tick(t, r); len(out) > 0 || due {
		t.Fatalf("the first tick of a gap sent %q, fetch due %v", out, due)
	}
	release(r, first) // the gap fills: it was transient
	if r.chain.Head().Height != 2 || r.retryWanted() {
		t.Fatalf("head %d, retry timer %v after the gap filled", r.chain.Head().Height, r.retryOn)
	}

	r, _ = testReplica(t, g, "1")
	release(r, third) // blocks 1 and 2 are late
	tick(t, r)
	if out, due := tick(t, r); len(out) > 0 || !due {
		t.Fatalf("a gap that lasted a period, the head unmoved: sent %q, fetch due %v", out, due)
	}
	if out, want := fetches(t, r), []string{"fetch 2 0", "fetch 3 0"}; !slices.Equal(out, want) {
		t.Fatalf("the fetch sent %q, want %q", out, want)
	}

	r, _ = testReplica(t, g, "1")
	release(r, third)
	tick(t, r)
	// Block 1 arrives by catch-up: the head moves, and block 3 still waits.
	r.inbound(inbound{from: "2", epoch: r.epoch["2"]}, syncMsg{op: opBlocks, blocks: first}, nil, r.checkReceived("2", first, true))
	settle(r)
	if out, due := tick(t, r); len(out) > 0 || due || r.chain.Head().Height != 1 {
		t.Fatalf("a gap behind a head that moved: sent %q, fetch due %v, head %d", out, due, r.chain.Head().Height)
	}
	if _, due := tick(t, r); !due {
		t.Fatal("no fetch once the head stayed still for a period")
	}
}

// A node that a peer told a head above its own, with nothing held ahead
// of a gap, fetches the blocks after its head once its own head has not
// moved for a period; a peer's new incarnation voids its old claim.
func TestClaimedHeadAboveOursIsFetched(t *testing.T) {
	g := GenesisForTest([]string{"1", "2", "3"}, 0)
	r, _ := testReplica(t, g, "1")
	head := func(op syncOp, height uint64) syncMsg {
		return syncMsg{op: op, genesis: g.Hash, height: height, hash: Hash{byte(height)}}
	}
	r.inbound(inbound{from: "2", epoch: r.epoch["2"]}, head(opHead, 4), nil, nil)
	if out := sends(t, r, nil); len(out) > 0 {
		t.Fatalf("a head above ours had %q sent", out)
	}
	tick(t, r)
	if _, due := tick(t, r); !due {
		t.Fatal("no fetch after a peer told a head above ours")
	}
	if out, want := fetches(t, r), []string{"fetch 2 0", "fetch 3 0"}; !slices.Equal(out, want) {
		t.Fatalf("the fetch sent %q, want %q", out, want)
	}

	r.peerUp("2")
	settle(r)
	r.takeInbox()
	settle(r)
	if r.retryWanted() {
		t.Fatal("the claim of a dead incarnation keeps the retry timer running")
	}
	// A claim of the old incarnation, still queued, is void too.
	r.inbound(inbound{from: "2", epoch: r.epoch["2"] - 1}, head(opHead, 4), nil, nil)
	settle(r)
	if r.retryWanted() {
		t.Fatal("a claim queued by a dead incarnation keeps the retry timer running")
	}
}

// A sender whose blocks the transport refused (ErrPeerBusy) tells the peer
// its head again when its retry timer fires, so that a peer that does not
// know it is behind learns it; a refused announcement or fetch is sent
// again. The peer, told a head above its own, fetches. What is sent again
// is an announcement, never the blocks: they go only to a peer that asks.
func TestRefusedCatchupIsAnnouncedAgain(t *testing.T) {
	g := GenesisForTest([]string{"1", "2", "3"}, 0)
	sender, _ := testReplica(t, g, "2")
	commitOne(t, sender, "1", 1, 3)
	commitOne(t, sender, "1", 1, 5)
	behind, _ := testReplica(t, g, "1")

	busy := func(a action) error {
		if a.kind == actSendBlocks {
			return &sendCut{at: a.from, err: fmt.Errorf("%w: %s", lamportmutex.ErrPeerBusy, a.peer)}
		}
		return nil
	}
	sender.inbound(inbound{from: "1", epoch: sender.epoch["1"]}, syncMsg{op: opHead, genesis: g.Hash, height: 0, hash: g.Hash}, nil, nil)
	if out := sends(t, sender, busy); len(out) > 0 {
		t.Fatalf("sent %q", out)
	}
	out, _ := tick(t, sender)
	if want := []string{"head 1 2"}; !slices.Equal(out, want) {
		t.Fatalf("the tick after the refused blocks sent %q, want %q", out, want)
	}
	if sender.retryWanted() {
		t.Fatal("the retry timer runs on once the announcement went")
	}

	// The peer hears of head 2 and fetches.
	hd := sender.chain.Head()
	behind.inbound(inbound{from: "2", epoch: behind.epoch["2"]}, syncMsg{op: opHead, genesis: g.Hash, height: hd.Height, hash: hd.Hash}, nil, nil)
	settle(behind)
	tick(t, behind)
	if _, due := tick(t, behind); !due {
		t.Fatal("the peer told of a head above its own does not fetch")
	}
	refuseTo3 := func(a action) error {
		if a.kind == actSend && a.peer == "3" {
			return fmt.Errorf("%w: 3", lamportmutex.ErrPeerBusy)
		}
		return nil
	}
	behind.takeInbox()
	if out, want := sends(t, behind, refuseTo3), []string{"fetch 2 0"}; !slices.Equal(out, want) {
		t.Fatalf("the fetch sent %q, want %q", out, want)
	}
	// The fetch that 3's link refused is sent again at the next tick.
	out, _ = tick(t, behind)
	if want := []string{"fetch 3 0"}; !slices.Equal(out, want) {
		t.Fatalf("the tick after a refused fetch sent %q, want %q", out, want)
	}

	// The sender answers the fetch with the blocks.
	sender.inbound(inbound{from: "1", epoch: sender.epoch["1"]}, syncMsg{op: opFetch, genesis: g.Hash, height: 0, hash: g.Hash}, nil, nil)
	if out, want := sends(t, sender, nil), []string{"blocks 1 1-2"}; !slices.Equal(out, want) {
		t.Fatalf("the answer to the fetch sent %q, want %q", out, want)
	}
}

// A Node's catch-up goroutine runs the retry timer: told a head above its
// own, with no other message to come, the node fetches by itself.
func TestNodeBehindFetchesByItself(t *testing.T) {
	defer goleak.VerifyNone(t)
	g := GenesisForTest([]string{"1", "2"}, 0)
	n, err := newNode(Config{ID: "1", Signer: testKey("1"), Genesis: g})
	if err != nil {
		t.Fatal(err)
	}
	l := &tapLocker{want: func(m syncMsg) bool { return m.op == opFetch }, got: make(chan syncMsg, 1)}
	n.start(l)
	defer n.Close(context.Background())
	claim, err := encodeSync(syncMsg{op: opHead, genesis: g.Hash, height: 3, hash: Hash{3}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.handleMessage("2", claim); err != nil {
		t.Fatal(err)
	}
	if m := <-l.got; m.height != 0 {
		t.Fatalf("fetched after height %d, not 0", m.height)
	}
}
