package ledger_test

// Attacks by a faulty member "2" on an honest node "1": each is refused,
// the member quarantined, and the node keeps working.

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// spyLocker grants at once, one holder at a time, and hands every catch-up
// message sent and every quarantine to the test. With gate set, Send waits
// until the gate is closed.
type spyLocker struct {
	sem         chan struct{}
	sent        chan []byte // payloads sent to any peer
	quarantined chan string // peers quarantined
	gate        chan struct{}

	mu       sync.Mutex
	clock    uint64
	released [][]byte
}

func newSpyLocker() *spyLocker {
	return &spyLocker{sem: make(chan struct{}, 1), sent: make(chan []byte, 1<<16), quarantined: make(chan string, 64)}
}

func (l *spyLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
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

func (l *spyLocker) Unlock(p []byte) error {
	l.mu.Lock()
	l.released = append(l.released, p)
	l.mu.Unlock()
	<-l.sem
	return nil
}

func (l *spyLocker) Send(_ string, p []byte) error {
	if l.gate != nil {
		<-l.gate
	}
	select {
	case l.sent <- p:
	default:
	}
	return nil
}

func (l *spyLocker) Quarantine(peer string, _ error) {
	select {
	case l.quarantined <- peer:
	default:
	}
}

// headMsg encodes a catch-up head (op 1) or answer (op 2): see syncmsg.go.
func headMsg(op byte, round, height uint64, hash ledger.Hash) []byte {
	return headMsgOf(ledger.GenesisForTest(memberIDs(3), 0).Hash, op, round, height, hash)
}

// headMsgOf is headMsg for the ledger of genesis g.
func headMsgOf(g ledger.Hash, op byte, round, height uint64, hash ledger.Hash) []byte {
	b := []byte{'S', 2, op}
	b = binary.BigEndian.AppendUint64(b, round)
	b = binary.BigEndian.AppendUint64(b, height)
	b = append(b, hash[:]...)
	return append(b, g[:]...)
}

// newVictim returns node "1" of members 1..3 over a spyLocker, and the
// events it emitted, which are complete once the node is closed.
func newVictim(t *testing.T) (*ledger.Node, *spyLocker, func() []ledger.Event) {
	t.Helper()
	var (
		mu     sync.Mutex
		events []ledger.Event
	)
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 0), Signer: ledger.TestKey("1"), OnEvent: func(e ledger.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	l := newSpyLocker()
	if err := n.SetLocker(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n, l, func() []ledger.Event {
		_ = n.Close(context.Background())
		mu.Lock()
		defer mu.Unlock()
		return events
	}
}

func refusedOf(events []ledger.Event, peer string) int {
	k := 0
	for _, e := range events {
		if e.Kind == ledger.EventPeerRefused && e.From == peer && errors.Is(e.Err, ledger.ErrPeerRefused) {
			k++
		}
		if e.Kind == ledger.EventFailed {
			return -1
		}
	}
	return k
}

// A false head at height 0 (a claim only) quarantines its sender; the node
// keeps working and commits.
func TestAttackFalseHeadQuarantines(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	if err := n.HandleMessage("2", headMsg(1, 0, 0, ledger.Hash{1})); err != nil {
		t.Fatal(err)
	}
	if p := <-l.quarantined; p != "2" {
		t.Fatalf("quarantined %s, want 2", p)
	}
	if err := n.Err(); err != nil {
		t.Fatalf("a false head stopped the node: %v", err)
	}
	if _, err := n.Transfer(context.Background(), "3", 1); err != nil {
		t.Fatalf("Transfer after a false head: %v", err)
	}
	// A false answer (nobody asked) is dropped; so is what the quarantined
	// incarnation still sends.
	if err := n.HandleMessage("2", headMsg(1, 0, 0, ledger.Hash{2})); err != nil {
		t.Fatal(err)
	}
	if got := refusedOf(events(), "2"); got != 1 {
		t.Fatalf("%d refusals of peer 2 (-1: the node failed), want 1", got)
	}
}

// A head at the largest height there is claims nothing this node can
// check, and has it send no blocks: the height does not wrap to the
// genesis. A sync round's question at that height is still answered.
func TestHeadAtMaxHeightSendsNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	if _, err := n.Transfer(context.Background(), "2", 1); err != nil {
		t.Fatal(err)
	}
	for _, round := range []uint64{0, 7} {
		if err := n.HandleMessage("2", headMsg(1, round, ^uint64(0), ledger.Hash{1})); err != nil {
			t.Fatal(err)
		}
	}
	for msg := range l.sent {
		if len(msg) > 2 && msg[2] == 3 {
			t.Fatalf("blocks sent for a head at height 2^64-1: %d bytes", len(msg))
		}
		if len(msg) == 83 && msg[2] == 2 {
			break // the answer to round 7, sent after the blocks it would send
		}
	}
	if got := refusedOf(events(), "2"); got != 0 {
		t.Fatalf("%d refusals of peer 2 (-1: the node failed), want 0", got)
	}
}

// A member that floods the catch-up inbox, faster than the node handles
// it, is held to the inbox's bounds: its blocks messages are dropped, and
// the heap stays bounded. Its blocks never crowd out its other messages
// (an honest peer's answer comes after its blocks): those have a bound of
// their own, past which the peer is refused.
func TestAttackCatchUpFloodBounded(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	if _, err := n.Transfer(context.Background(), "2", 1); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	l.gate = gate // the catch-up goroutine's sends now wait
	var opened sync.Once
	open := func() { opened.Do(func() { close(gate) }) }
	defer open() // also when the test fails: Close waits for the goroutine
	g := n.Genesis()
	if err := n.HandleMessage("3", headMsg(1, 0, 0, g.Hash)); err != nil { // honest: node 1 sends 3 block 1
		t.Fatal(err)
	}
	const size = 4 << 10
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const flood = 50_000 // 200 MB offered
	for range flood {
		junk := make([]byte, size) // a transport hands over a buffer per message
		copy(junk, []byte{'S', 2, 3})
		if err := n.HandleMessage("2", junk); err != nil {
			t.Fatalf("a blocks message over the bound: %v, want it dropped", err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %.1f MiB after %d MiB offered", float64(growth)/(1<<20), flood*size>>20)
	if limit := int64(ledger.MaxInboxBytes + 16<<20); growth > limit {
		t.Fatalf("heap grew by %d bytes, more than %d", growth, limit)
	}
	// Heads, answers and fetches are queued apart from the blocks, up to
	// their own bound; the next one is refused.
	for i := range ledger.MaxInboxControl {
		if err := n.HandleMessage("2", headMsg(1, 0, 0, g.Hash)); err != nil {
			t.Fatalf("head %d behind a full inbox of blocks: %v, want it queued", i+1, err)
		}
	}
	if err := n.HandleMessage("2", headMsg(1, 0, 0, g.Hash)); !errors.Is(err, ledger.ErrPeerRefused) {
		t.Fatalf("head over its bound: %v, want a refusal", err)
	}
	open()
	if _, err := n.Transfer(context.Background(), "2", 1); err != nil {
		t.Fatalf("Transfer after the flood: %v", err)
	}
	if n.Err() != nil || refusedOf(events(), "2") != 1 {
		t.Fatalf("node error %v, or not one refusal of peer 2", n.Err())
	}
}

// Releases at heights far beyond the head are not kept: at most MaxPending
// blocks wait, and those within the window go in once the gap fills, up to
// the last seal in the window; the unsealed blocks after it wait for their
// seal, which was beyond the window and is fetched again.
func TestAttackFarFutureBlocksBounded(t *testing.T) {
	defer goleak.VerifyNone(t)
	g, _ := ledger.NewGenesis(memberIDs(3), 1_000_000, testPub)
	chain, _ := ledger.NewChain(g)
	const total = 3 * ledger.MaxPending
	for i := range total {
		b, err := nextSealed(chain, ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "1", Amount: 1}, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if err := chain.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	blocks := ledger.ChainBlocks(chain)
	// release is blocks[lo:hi] as "2" releases them: one run, sealed once,
	// at its end (a seal does not change a block's hash).
	release := func(lo, hi int) []byte {
		t.Helper()
		run := slices.Clone(blocks[lo:hi])
		for i := range run[:len(run)-1] {
			run[i].Sig = nil
		}
		payload, err := ledger.EncodeBatch(run)
		if err != nil {
			t.Fatal(err)
		}
		return payload
	}
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 1_000_000), Signer: ledger.TestKey("1")})
	if err != nil {
		t.Fatal(err)
	}
	l := newSpyLocker()
	_ = n.SetLocker(l)
	defer n.Close(context.Background())
	// lastSeal is the highest sealed height within the window.
	lastSeal := uint64(1)
	for lo := total; lo >= 2; lo -= 7 { // newest first: the worst order
		if lo <= ledger.MaxPending && uint64(lo) > lastSeal {
			lastSeal = uint64(lo)
		}
		if err := n.HandleRelease("2", release(max(lo-6, 2), lo+1)); err != nil {
			t.Fatal(err)
		}
		if k := ledger.PendingLen(n); k > ledger.MaxPending {
			t.Fatalf("%d blocks held, more than %d", k, ledger.MaxPending)
		}
	}
	// A block at the largest height there is, sealed by its sender.
	far := ledger.Block{Height: ^uint64(0), Clock: 1, Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: "2", To: "1", Amount: 1}}
	far.Hash = far.ComputeHash()
	p, _ := ledger.EncodeBatch([]ledger.Block{far.Seal(ledger.TestKey("2"))})
	if err := n.HandleRelease("2", p); err != nil || ledger.PendingLen(n) > ledger.MaxPending {
		t.Fatalf("far block: %v, %d held", err, ledger.PendingLen(n))
	}
	if err := n.HandleRelease("2", release(1, 2)); err != nil {
		t.Fatal(err)
	}
	if h := n.Head().Height; h != lastSeal || n.Err() != nil {
		t.Fatalf("head %d, want %d (the last seal within %d); node error %v", h, lastSeal, ledger.MaxPending, n.Err())
	}
	if k := ledger.PendingLen(n); k != int(ledger.MaxPending-lastSeal) {
		t.Fatalf("%d blocks held after the head, want the %d unsealed ones up to the window's end", k, ledger.MaxPending-lastSeal)
	}
	// It asks its peers for the dropped blocks.
	for msg := range l.sent {
		if len(msg) > 2 && msg[2] == 4 { // opFetch
			break
		}
	}
}

// A sync round waiting on a peer that answers falsely does not take the
// answer: the peer is quarantined, and the round waits for its next
// incarnation, like for a restart.
func TestAttackFalseAnswerWaitsForNextIncarnation(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	n.HandlePeerUp("2") // a sync round is due
	n.HandlePeerUp("3")
	done := make(chan error, 1)
	go func() { _, err := n.Transfer(context.Background(), "2", 1); done <- err }()
	g := n.Genesis()
	answer := func(peer string, hash ledger.Hash) {
		for msg := range l.sent { // skip the announcements
			if len(msg) == 83 && msg[2] == 1 && binary.BigEndian.Uint64(msg[3:]) != 0 {
				if err := n.HandleMessage(peer, headMsg(2, binary.BigEndian.Uint64(msg[3:]), 0, hash)); err != nil {
					t.Fatal(err)
				}
				return
			}
		}
	}
	answer("2", ledger.Hash{9}) // false, and the round's first question
	if p := <-l.quarantined; p != "2" {
		t.Fatalf("quarantined %s, want 2", p)
	}
	select {
	case err := <-done:
		t.Fatalf("the round finished on a false answer: %v", err)
	default:
	}
	n.HandlePeerUp("2") // the round starts again
	for range 2 {       // the questions of the new round to 2 and 3
		var msg []byte
		for msg = range l.sent {
			if len(msg) == 83 && msg[2] == 1 && binary.BigEndian.Uint64(msg[3:]) != 0 {
				break
			}
		}
		round := binary.BigEndian.Uint64(msg[3:])
		for _, p := range []string{"2", "3"} {
			_ = n.HandleMessage(p, headMsg(2, round, 0, g.Hash))
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Transfer after the peer's restart: %v", err)
	}
	if got := refusedOf(events(), "2"); got != 1 {
		t.Fatalf("%d refusals of peer 2 (-1: failed), want 1", got)
	}
}

// A subscriber that blocks forever does not stop transfers or the handling
// of releases; it loses events, and is told how many.
func TestSlowSubscriberDoesNotStallNode(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCluster()
	members := memberIDs(2)
	unblock := make(chan struct{})
	var (
		mu      sync.Mutex
		lost    uint64
		blocked bool
	)
	var nodes []*ledger.Node
	for _, id := range members {
		cfg := ledger.Config{ID: id, Genesis: ledger.GenesisForTest(members, 1_000_000), Signer: ledger.TestKey(id)}
		if id == "2" {
			cfg.OnEvent = func(e ledger.Event) {
				mu.Lock()
				first := !blocked
				blocked = true
				if e.Kind == ledger.EventDropped {
					lost += e.Dropped
				}
				mu.Unlock()
				if first {
					<-unblock
				}
			}
		}
		n, err := ledger.NewUnwired(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = n.SetLocker(&fakeLocker{c: c, id: id})
		c.nodes[id] = n
		nodes = append(nodes, n)
	}
	const transfers = 3 * ledger.EventQueueSize
	for range transfers {
		if _, err := nodes[0].Transfer(context.Background(), "2", 1); err != nil {
			t.Fatal(err)
		}
	}
	if h := nodes[1].Head().Height; h != transfers {
		t.Fatalf("node 2 at height %d, want %d", h, transfers)
	}
	if _, err := nodes[1].Transfer(context.Background(), "1", 1); err != nil {
		t.Fatal(err)
	}
	if nodes[1].EventsDropped() == 0 {
		t.Fatal("no event dropped")
	}
	close(unblock)
	for _, n := range nodes {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	dropped := nodes[1].EventsDropped()
	t.Logf("%d events, %d dropped", transfers*2+2, dropped)
	mu.Lock()
	defer mu.Unlock()
	if lost != dropped {
		t.Fatalf("subscriber told of %d lost events, %d dropped", lost, dropped)
	}
}

// A subscriber stalled in OnEvent does not hang Close: Close drops the
// events still queued, counts them, and returns; the stalled call ends on
// its own once the subscriber lets go.
func TestStalledSubscriberDoesNotHangClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	release := make(chan struct{})
	defer close(release) // the subscriber stays stalled until the test ends
	stalled := make(chan struct{})
	var once sync.Once
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(2), 0), Signer: ledger.TestKey("1"),
		OnEvent: func(ledger.Event) {
			once.Do(func() { close(stalled) })
			<-release
		}})
	if err != nil {
		t.Fatal(err)
	}
	_ = n.SetLocker(newSpyLocker())
	const transfers = 10
	for range transfers {
		if _, err := n.Transfer(context.Background(), "2", 1); err != nil {
			t.Fatal(err)
		}
	}
	<-stalled
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Each transfer emits four events (the grant, its block, the release,
	// the commit); the stalled call has one of them.
	if got := n.EventsDropped(); got != 4*transfers-1 {
		t.Fatalf("%d events dropped, want %d", got, 4*transfers-1)
	}
}

// sealedBlock returns a block of one transfer from "from" to "to" at
// height h after prev, sealed with from's key.
func sealedBlock(h uint64, prev ledger.Hash, from, to string) ledger.Block {
	b := ledger.Block{Height: h, Prev: prev, Clock: h,
		Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: from, To: to, Amount: 1}}
	b.Hash = b.ComputeHash()
	return b.Seal(ledger.TestKey(from))
}

func release(t *testing.T, blocks ...ledger.Block) []byte {
	t.Helper()
	p, err := ledger.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func kindsOf(events []ledger.Event, kind ledger.EventKind) []ledger.Event {
	var out []ledger.Event
	for _, e := range events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Only two blocks at one height sealed by one key stop a node. A block
// that another member sealed for a height this node filled, relayed by an
// honest peer, proves nothing: it is refused, and neither stops the node
// nor costs the relaying peer its session. A second block of "2"'s own
// for the height, relayed by "3", proves that "2" equivocated: the node
// stops, and the evidence names both blocks and their maker.
func TestForkProofStopsNode(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	g := n.Genesis()
	ours := sealedBlock(1, g.Hash, "2", "1")
	if err := n.HandleRelease("2", release(t, ours)); err != nil {
		t.Fatal(err)
	}
	other := sealedBlock(1, g.Hash, "3", "1") // sealed by "3", which had no grant
	if err := n.HandleMessage("3", catchUpBlocks(t, []ledger.Block{other})); err != nil {
		t.Fatal(err)
	}
	relayed := sealedBlock(1, g.Hash, "3", "2")
	if err := n.HandleMessage("2", catchUpBlocks(t, []ledger.Block{relayed})); err != nil {
		t.Fatal(err)
	}
	twin := sealedBlock(1, g.Hash, "2", "3") // "2" seals a second block for height 1
	if err := n.HandleMessage("3", catchUpBlocks(t, []ledger.Block{twin})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 stopping", func() bool { return n.Err() != nil })
	if len(l.quarantined) != 0 {
		t.Fatalf("peer %s quarantined", <-l.quarantined)
	}
	if _, err := n.Transfer(context.Background(), "2", 1); !errors.Is(err, ledger.ErrDiverged) {
		t.Fatalf("Transfer after a proven fork: %v", err)
	}
	evs := events()
	failedAt := slices.IndexFunc(evs, func(e ledger.Event) bool { return e.Kind == ledger.EventFailed })
	if slices.ContainsFunc(evs[failedAt+1:], func(e ledger.Event) bool { return e.Kind == ledger.EventDisagreement }) {
		t.Fatalf("events %v, want the disagreements before the failure", evs)
	}
	failed := kindsOf(evs, ledger.EventFailed)
	var ce *ledger.ConflictError
	if err := n.Err(); len(failed) != 1 || !errors.As(err, &ce) || ce.Ours.Hash != ours.Hash || ce.Theirs.Hash != twin.Hash || ce.Peer != "3" ||
		!errors.As(failed[0].Err, &ce) || !errors.Is(failed[0].Err, ledger.ErrDiverged) {
		t.Fatalf("Err() = %v, failures %v, want the evidence of 2's two blocks", err, failed)
	}
	dis := kindsOf(evs, ledger.EventDisagreement)
	if len(dis) != 2 || dis[0].From != "3" || dis[0].Block.Hash != other.Hash || !errors.As(dis[0].Err, &ce) ||
		ce.Ours.Hash != ours.Hash || ce.Theirs.Hash != other.Hash || dis[1].From != "2" || dis[1].Block.Hash != relayed.Hash {
		t.Fatalf("disagreements %v, want 3's block from 3, then from 2", dis)
	}
	if got := kindsOf(evs, ledger.EventPeerRefused); len(got) != 0 {
		t.Fatalf("peers refused: %v", got)
	}
}

// A member that does not hold the mutex sends a block of its own, sealed
// with its key, by catch-up: the node cannot tell it from a holder's and
// inserts it. The real holder's release of its block for that height, and
// of the next, is then refused without quarantine: the node does not stop,
// and the honest holder keeps its session.
func TestInjectedBlockDoesNotCostTheHolder(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, l, events := newVictim(t)
	g := n.Genesis()
	injected := sealedBlock(1, g.Hash, "3", "1")
	if err := n.HandleMessage("3", catchUpBlocks(t, []ledger.Block{injected})); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitHeight(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	real1 := sealedBlock(1, g.Hash, "2", "1")
	if err := n.HandleRelease("2", release(t, real1)); err != nil {
		t.Fatalf("the holder's release: %v", err)
	}
	real2 := sealedBlock(2, real1.Hash, "2", "1")
	if err := n.HandleRelease("2", release(t, real2)); err != nil {
		t.Fatalf("the holder's next release: %v", err)
	}
	if err := n.Err(); err != nil {
		t.Fatalf("the node stopped: %v", err)
	}
	if h := n.Head(); h.Hash != injected.Hash {
		t.Fatalf("head %d %s, want the first block it took", h.Height, h.Hash.Short())
	}
	if _, err := n.Transfer(context.Background(), "3", 1); err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	evs := events()
	if len(l.quarantined) != 0 {
		t.Fatalf("peer %s quarantined", <-l.quarantined)
	}
	if got := kindsOf(evs, ledger.EventPeerRefused); len(got) != 0 {
		t.Fatalf("peers refused: %v", got)
	}
	if dis := kindsOf(evs, ledger.EventDisagreement); len(dis) != 1 || dis[0].From != "2" || dis[0].Block.Hash != real1.Hash {
		t.Fatalf("disagreements %v, want one, for 2's block 1", dis)
	}
}

// Over the real mutex and channel network: a member that sends a false
// head is refused and its session quarantined; the node never stops, and
// the cluster commits again once the member restarts.
func TestAttackFalseHeadOverRealMutex(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 5, 0, 4)
	defer c.close()
	c.transfers(t, "2", "1", 2)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := c.member("2").mu.Send("1", headMsgOf(c.genesis.Hash, 1, 0, 0, ledger.Hash{1})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node 1 refusing peer 2", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.refused["1"] > 0
	})
	if err := c.node("1").Err(); err != nil {
		t.Fatalf("node 1 stopped: %v", err)
	}
	if b, err := c.node("1").Balance("1"); err != nil || b != crashBalance+2 {
		t.Fatalf("node 1 reads balance %d, %v", b, err)
	}
	c.crash("2", false) // its next incarnation behaves
	c.transfers(t, "1", "3", 2)
	c.transfers(t, "2", "3", 1)
	c.converge(ctx)
}

// Over the real mutex: a member whose release carries a block that spends
// another member's money is refused by both peers and quarantined; the
// block is in no chain, nobody stops, and the cluster commits again once
// the member restarts.
func TestAttackBadReleaseOverRealMutex(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 6, 0, 4)
	defer c.close()
	c.transfers(t, "1", "2", 1)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	head := c.node("1").Head()
	// Node 3 may not have had node 1's release yet: peer 2 can be granted
	// before it arrives there.
	if err := c.node("3").WaitHeight(ctx, head.Height); err != nil {
		t.Fatal(err)
	}
	forged := ledger.Block{Height: head.Height + 1, Prev: head.Hash, Clock: head.Clock + 1,
		Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: "3", To: "2", Amount: 5}}
	forged.Hash = forged.ComputeHash()
	forged = forged.Seal(ledger.TestKey("2")) // "2" cannot seal for "3": its own key is all it has
	payload, _ := ledger.EncodeBatch([]ledger.Block{forged})
	mu := c.member("2").mu
	if _, err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock(payload); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nodes 1 and 3 refusing peer 2", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.refused["1"] > 0 && c.refused["3"] > 0
	})
	for _, id := range []string{"1", "3"} {
		if n := c.node(id); n.Err() != nil || n.Head().Hash != head.Hash {
			t.Fatalf("node %s: error %v, head %v", id, n.Err(), n.Head())
		}
	}
	c.crash("2", false)
	c.transfers(t, "3", "1", 1)
	c.transfers(t, "2", "1", 1)
	for _, b := range c.converge(ctx) {
		if b.Hash == forged.Hash {
			t.Fatal("the forged block is in the chain")
		}
	}
}

// A ConflictError names the predecessors of both blocks when they differ.
func TestConflictErrorNamesBothPredecessors(t *testing.T) {
	ours := sealedBlock(2, ledger.Hash{1}, "1", "2")
	theirs := sealedBlock(2, ledger.Hash{2}, "3", "2")
	msg := (&ledger.ConflictError{Height: 2, Ours: ours, Theirs: theirs, Peer: "3"}).Error()
	if !strings.Contains(msg, "after "+ours.Prev.Short()+" and "+theirs.Prev.Short()) {
		t.Fatalf("%q does not name both predecessors", msg)
	}
	theirs = sealedBlock(2, ours.Prev, "3", "2")
	if msg := (&ledger.ConflictError{Height: 2, Ours: ours, Theirs: theirs, Peer: "3"}).Error(); !strings.Contains(msg, "both after "+ours.Prev.Short()) {
		t.Fatalf("%q does not name the shared predecessor", msg)
	}
}
