package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// The replica simulation: a deterministic, seeded walk of a cluster in
// which each peer is a lamportmutex.Machine and the real replica, joined
// by simulated per-pair FIFO links delivered in random order across links.
// The walk submits random transfers, runs the catch-up inboxes and the
// store syncs at random, and crashes and restarts any peer at any step
// (the holder too, and between the deliveries of its release); a crash
// keeps a prefix of what the store holds, at least what it synced. In some
// seeds the stores fail (see sim_faults_test.go), the mutex refuses
// catch-up messages to a peer whose link is full (ErrPeerBusy), and a
// peer's catch-up inbox is full when blocks arrive. After every step it
// checks that no two peers hold different blocks at one height, that money
// is conserved and no balance is negative, that no honest peer was refused,
// and that no peer stopped but for its own store's failure. Every success
// is checked when it is reported: its block is in the reporter's chain and
// covered by its store's last sync. Once the walk settles, with everyone
// up (a node that stopped restarted), the network quiet and no timer
// running, every chain is the same before any peer is granted the mutex
// again; and at the end, after a transfer from every peer, too, and it
// holds every block whose transfer reported success.
//
// The driver here plays the Node's part (the committer, the catch-up
// goroutine, the syncer) over the replica's inputs and actions.

// simPeer is one member of the simulated cluster.
type simPeer struct {
	id       string
	inc      uint64
	m        *lamportmutex.Machine
	r        *replica
	st       *MemStore
	synced   uint64     // the height the store's last Sync covered
	queue    []*request // submitted, waiting for a grant
	inflight []*request // committed, waiting for completion
	granted  bool       // holds the mutex and has not committed yet
	seen     bool       // the committer has had the current grant
	inRound  bool
	roundGen uint64
	simStore
}

type replicaSim struct {
	t          testing.TB
	rng        *rand.Rand
	g          Block
	ids        []string
	peers      []*simPeer
	links      [][][]lamportmutex.Message // links[from][to], head first
	durability Durability
	algo       lamportmutex.Algorithm
	maxBatch   int
	total      int64
	successes  []Block // blocks of transfers that reported success
	fault      error   // the first thing an honest peer must never do
	noSync     bool    // broken variant: append without the sync round after a PeerUp
	lieSync    bool    // broken variant: the syncer reports a sync the store did not make
	steps      int
	simFaults
}

func newReplicaSim(t testing.TB, seed uint64, n int) *replicaSim {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	g, err := NewGenesis(ids, DefaultInitialBalance, testPubKeys(ids...))
	if err != nil {
		t.Fatal(err)
	}
	s := &replicaSim{t: t, rng: rng, g: g, ids: ids, links: make([][][]lamportmutex.Message, n),
		durability: Durability(rng.IntN(2)), algo: lamportmutex.Algorithm(rng.IntN(2)), maxBatch: 1 + rng.IntN(4), total: DefaultInitialBalance * int64(n)}
	s.simFaults = newSimFaults(rng)
	for i := range n {
		s.links[i] = make([][]lamportmutex.Message, n)
		st, err := NewMemStore(g)
		if err != nil {
			t.Fatal(err)
		}
		s.peers = append(s.peers, &simPeer{id: ids[i], st: st})
		s.start(i)
	}
	for from := range n {
		for to := range n {
			if from != to {
				s.links[from][to] = []lamportmutex.Message{s.peerUpMsg(from, to)}
			}
		}
	}
	return s
}

func (s *replicaSim) peerUpMsg(from, to int) lamportmutex.Message {
	return lamportmutex.Message{Kind: lamportmutex.PeerUp, From: s.ids[from], To: s.ids[to], Incarnation: s.peers[from].inc}
}

// start loads peer i's replica from its store and gives it a new Machine,
// as NewNode does.
func (s *replicaSim) start(i int) {
	p := s.peers[i]
	log := slog.New(slog.DiscardHandler)
	chain, cp, err := loadChain(p.st, s.g, testPubKeys(p.id)[p.id], log)
	if err != nil {
		s.t.Fatalf("restart %s: %v", p.id, err)
	}
	cfg := Config{ID: p.id, Signer: testKey(p.id), Durability: s.durability, MaxBatch: s.maxBatch}
	p.r = newReplica(cfg, chain, cp, p.st.Read, log)
	p.r.rounds = uint64(i+1) << 40 * (p.inc + 1)
	p.synced = chain.Head().Height
	if p.m, err = lamportmutex.NewMachine(p.id, s.ids, p.inc, lamportmutex.WithAlgorithm(s.algo)); err != nil {
		s.t.Fatal(err)
	}
	p.m.AdvanceClock(chain.Head().Clock)
	p.queue, p.inflight, p.granted, p.seen, p.inRound = nil, nil, false, false, false
	p.simStore = simStore{}
}

func (s *replicaSim) index(id string) int {
	for i, p := range s.ids {
		if p == id {
			return i
		}
	}
	panic("unknown peer " + id)
}

func (s *replicaSim) send(from int, out []lamportmutex.Message) {
	for _, m := range out {
		to := s.index(m.To)
		s.links[from][to] = append(s.links[from][to], m)
	}
}

func (s *replicaSim) faultf(format string, args ...any) {
	if s.fault == nil {
		s.fault = fmt.Errorf("step %d: "+format, append([]any{s.steps}, args...)...)
	}
}

// apply applies peer i's queued actions as a Node does, continuations
// included.
func (s *replicaSim) apply(i int) {
	p := s.peers[i]
	for len(p.r.out) > 0 {
		for _, a := range p.r.take() {
			err := s.do(i, a)
			if a.then != nil {
				a.then(err)
			}
		}
	}
}

func (s *replicaSim) do(i int, a action) error {
	p := s.peers[i]
	switch a.kind {
	case actPersist:
		return s.persist(i, a.blocks)
	case actRelease:
		s.checkRelease(i, a.payload)
		out, err := p.m.Release(a.payload)
		s.send(i, out)
		return err
	case actSend:
		return s.sendData(i, a.peer, a.payload)
	case actSendBlocks:
		var missing []Block
		for h := a.from; h <= a.to; h++ {
			b, _, err := p.r.block(h)
			if err != nil {
				return err
			}
			missing = append(missing, b)
		}
		for len(missing) > 0 {
			cut := sealCut(missing, s.maxBatch)
			if cut == 0 {
				s.faultf("%s: blocks %d-%d end unsealed", p.id, missing[0].Height, a.to)
				return nil
			}
			payload, err := encodeSync(syncMsg{op: opBlocks, blocks: missing[:cut]})
			if err != nil {
				return err
			}
			if err := s.sendData(i, a.peer, payload); err != nil {
				return &sendCut{at: missing[0].Height, err: err} // as sendBlocks
			}
			missing = missing[cut:]
		}
	case actQuarantine:
		s.faultf("%s quarantines honest %s: %v", p.id, a.peer, a.cause)
	case actEmit:
		switch a.ev.Kind {
		case EventFailed:
			// An honest node stops only for its own store's failure.
			if p.storeErr == nil || !errors.Is(a.ev.Err, errSimStore) {
				s.faultf("%s: %v: %v", p.id, a.ev.Kind, a.ev.Err)
			}
		case EventDisagreement, EventPeerRefused:
			s.faultf("%s: %v: %v", p.id, a.ev.Kind, a.ev.Err)
		}
	case actDone:
		for _, w := range a.waits {
			w.done(a.cause)
		}
	case actKickSyncer, actKickCatchup, actWakeRound:
		// The walk schedules these itself.
	default:
		panic(fmt.Sprintf("unknown action %d", a.kind))
	}
	return nil
}

// deliver hands the head of link from->to to its receiver, as a Mutex and
// its Handler do.
func (s *replicaSim) deliver(from, to int) {
	msg := s.links[from][to][0]
	s.links[from][to] = s.links[from][to][1:]
	p := s.peers[to]
	if msg.Kind == lamportmutex.Release && msg.Payload != nil && p.m.Accepts(msg) == nil {
		blocks, err := DecodeBatch(msg.Payload)
		if err == nil {
			err = p.r.checkReceived(msg.From, blocks, false)
		}
		var verdict error
		p.r.peerRelease(msg.From, blocks, err, &verdict)
		s.apply(to)
		if verdict != nil {
			s.faultf("%s refused the release of %s: %v", p.id, msg.From, verdict)
		}
	}
	out, err := p.m.Step(msg)
	if errors.Is(err, lamportmutex.ErrStale) {
		return
	}
	if err != nil {
		s.faultf("%s: step %v: %v", p.id, msg, err)
		return
	}
	s.send(to, out)
	switch msg.Kind {
	case lamportmutex.PeerUp:
		p.r.peerUp(msg.From)
	case lamportmutex.Data:
		if err := s.message(to, msg); err != nil {
			s.faultf("%s refused a message of %s: %v", p.id, msg.From, err)
		}
	}
	s.apply(to)
}

// catchUp runs peer i's catch-up goroutine over what its inbox holds.
func (s *replicaSim) catchUp(i int) {
	r := s.peers[i].r
	batch, fetch := r.takeInbox()
	s.apply(i)
	if fetch {
		return
	}
	announce := false
	for _, in := range batch {
		if in.up {
			r.dequeue(in)
			announce = true
			continue
		}
		msg, decErr := decodeSync(in.payload)
		var checkErr error
		if decErr == nil && msg.op == opBlocks {
			checkErr = r.checkReceived(in.from, msg.blocks, true)
		}
		if r.dequeue(in) {
			if announce {
				r.announce(opHead)
				announce = false
			}
			r.inbound(in, msg, decErr, checkErr)
		}
		s.apply(i)
	}
	if announce {
		r.announce(opHead)
		s.apply(i)
	}
}

// sync runs peer i's syncer once.
func (s *replicaSim) sync(i int) {
	p := s.peers[i]
	target, pending, cp, cpHeight := p.r.syncPlan(false)
	var err error
	if pending || cp != nil {
		err = s.storeSync(i)
	}
	if err == nil && !s.lieSync {
		p.synced = max(p.synced, target)
	}
	if err == nil && cp != nil {
		if err := p.st.SaveCheckpoint(cpHeight, cp); err != nil {
			s.t.Fatal(err)
		}
	}
	if s.hideSyncErr {
		err = nil
	}
	p.r.syncDone(target, err == nil && cp != nil, cpHeight, err)
	s.apply(i)
}

// submit queues a random transfer at peer i.
func (s *replicaSim) submit(i int) {
	p := s.peers[i]
	to := s.rng.IntN(len(s.ids) - 1)
	if to >= i {
		to++
	}
	var id TransferID
	for k := range id {
		id[k] = byte(s.rng.Uint32())
	}
	t := Transfer{ID: id, From: p.id, To: s.ids[to], Amount: 1 + s.rng.Int64N(6)}
	p.queue = append(p.queue, &request{t: t, done: make(chan struct{})})
}

// progress moves peer i's committer on: it requests the mutex while
// transfers wait, runs the sync round once granted, and commits.
func (s *replicaSim) progress(i int) {
	p := s.peers[i]
	if !p.m.Held() {
		p.seen = false
	}
	if p.m.Held() && !p.seen {
		p.granted, p.seen = true, true
	}
	if p.kept && p.m.Held() && !p.granted && s.releaseKept {
		out, err := p.m.Release(nil)
		if err != nil {
			s.faultf("%s: release a kept mutex: %v", p.id, err)
		}
		s.send(i, out)
	}
	for p.granted {
		if !p.inRound && p.r.roundDue() && !s.noSync {
			p.roundGen, p.inRound = p.r.startRound(), true
			s.apply(i)
		}
		if p.inRound {
			done, err := p.r.roundResult(p.roundGen)
			s.apply(i)
			if !done {
				break
			}
			if err != nil && !errors.Is(err, errPeerCameUp) {
				s.tally.roundsFailed++
			}
			if s.ignoreRoundErr && err != nil && !errors.Is(err, errPeerCameUp) {
				err = nil
			}
			p.r.endRound(p.roundGen, err == nil)
			p.inRound = false
			if errors.Is(err, errPeerCameUp) {
				continue
			}
			if err != nil {
				p.granted = false
				out, rerr := p.m.Release(nil)
				if rerr != nil {
					s.faultf("%s: release after a failed round: %v", p.id, rerr)
				}
				s.send(i, out)
				break
			}
		}
		k := min(len(p.queue), s.maxBatch)
		batch := p.queue[:k:k]
		p.queue = p.queue[k:]
		p.granted = false
		tok, _ := p.m.Own()
		p.committing = true
		p.r.commit(batch, tok.Clock)
		s.apply(i)
		p.committing = false
		p.inflight = append(p.inflight, batch...)
	}
	if p.r.failed != nil && !p.granted {
		// As the Node's committer: what waits fails at once.
		p.queue = nil
	}
	if !p.m.Held() && !p.m.Requesting() && len(p.queue) > 0 {
		out, err := p.m.Request()
		if err != nil {
			s.faultf("%s: request: %v", p.id, err)
		}
		s.send(i, out)
	}
	keep := p.inflight[:0]
	for _, q := range p.inflight {
		select {
		case <-q.done:
			if q.err == nil && !q.res.Duplicate {
				s.checkSuccess(i, q.res.Block)
				s.successes = append(s.successes, q.res.Block)
			}
		default:
			keep = append(keep, q)
		}
	}
	p.inflight = keep
}

// crash kills peer i and restarts it: its store keeps a prefix of what it
// holds, at least what it synced (see keptHeight), or, with exited set
// (the process exited; the machine stayed up), all it holds; of each link
// out of it a random prefix survives, then its PeerUp; each link into it
// is dropped, and starts with the sender's PeerUp.
func (s *replicaSim) crash(i int, exited bool) {
	p := s.peers[i]
	keep := s.keptHeight(i, exited)
	kept, err := p.st.Read(1, keep)
	if keep == 0 {
		kept, err = nil, nil
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if p.st, err = NewMemStore(s.g); err != nil {
		s.t.Fatal(err)
	}
	if len(kept) > 0 {
		if err := p.st.Append(kept...); err != nil {
			s.t.Fatal(err)
		}
	}
	p.inc++
	s.start(i)
	for q := range s.ids {
		if q == i {
			continue
		}
		out := s.links[i][q]
		k := s.rng.IntN(len(out) + 1)
		s.links[i][q] = append(out[:k:k], s.peerUpMsg(i, q))
		s.links[q][i] = []lamportmutex.Message{s.peerUpMsg(q, i)}
	}
}

// victim picks the peer to crash: half the time the holder, or a peer
// whose release is still being delivered, if there is one; else i.
func (s *replicaSim) victim(i int) int {
	if s.rng.IntN(2) == 0 {
		return i
	}
	for j, p := range s.peers {
		if p.m.Held() {
			return j
		}
		for _, l := range s.links[j] {
			for _, m := range l {
				if m.Kind == lamportmutex.Release && m.Payload != nil {
					return j
				}
			}
		}
	}
	return i
}

// check is the invariant after every step.
func (s *replicaSim) check() error {
	if s.fault != nil {
		return s.fault
	}
	for a, p := range s.peers {
		var sum int64
		for k, v := range p.r.chain.bal {
			if v < 0 {
				return fmt.Errorf("step %d: %s holds a negative balance %d for %s", s.steps, p.id, v, p.r.chain.members[k])
			}
			sum += v
		}
		if sum != s.total {
			return fmt.Errorf("step %d: %s holds %d in all, not %d", s.steps, p.id, sum, s.total)
		}
		for _, q := range s.peers[a+1:] {
			// The chains are hash-linked: one block in common at the lower
			// head means every block below it is common too.
			h := min(p.r.chain.Head().Height, q.r.chain.Head().Height)
			bp, _, err1 := p.r.block(h)
			bq, _, err2 := q.r.block(h)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			if bp.Hash != bq.Hash {
				return fmt.Errorf("step %d: fork at height %d: %s has %s, %s has %s", s.steps, h, p.id, bp.Hash.Short(), q.id, bq.Hash.Short())
			}
		}
	}
	return nil
}

func (s *replicaSim) busyLinks() [][2]int {
	var busy [][2]int
	for f := range s.links {
		for t, l := range s.links[f] {
			if len(l) > 0 {
				busy = append(busy, [2]int{f, t})
			}
		}
	}
	return busy
}

// step takes one random step; with quiet set, no transfers and no crashes.
func (s *replicaSim) step(quiet bool, crashes *int) {
	s.steps++
	i := s.rng.IntN(len(s.peers))
	switch x := s.rng.IntN(100); {
	case x < 8 && !quiet:
		s.submit(i)
	case x < 10 && !quiet && *crashes > 0:
		*crashes--
		s.crash(s.victim(i), false)
	case x < 12 && s.peers[i].r.failed != nil:
		s.crash(i, true) // its operator restarts a node that stopped
	case x < 14 && s.peers[i].inRound:
		s.peers[i].r.reask() // the round's retry timer fires
		s.apply(i)
	case x < 17 && s.peers[i].r.retryWanted():
		if s.peers[i].r.retryTick() { // the catch-up goroutine's retry timer fires
			s.tally.retried++
		}
		s.apply(i)
	case x < 20:
		s.catchUp(i)
	case x < 27:
		s.sync(i)
	default:
		if busy := s.busyLinks(); len(busy) > 0 {
			l := busy[s.rng.IntN(len(busy))]
			s.deliver(l[0], l[1])
		}
	}
	for j := range s.peers {
		s.progress(j)
	}
}

// settle runs quiet steps until nothing moves: no message in flight, no
// inbox, nothing unsynced, nobody waiting for the mutex, no retry timer
// running.
func (s *replicaSim) settle() error {
	for range 200000 {
		idle := len(s.busyLinks()) == 0
		for _, p := range s.peers {
			idle = idle && p.r.failed == nil && len(p.r.inbox) == 0 && !p.r.refetchDue && p.r.written == p.r.durable &&
				len(p.queue) == 0 && len(p.inflight) == 0 && !p.m.Requesting() && !p.m.Held() && !p.r.retryWanted()
		}
		if idle {
			return nil
		}
		var none int
		s.step(true, &none)
		if err := s.check(); err != nil {
			return err
		}
	}
	return fmt.Errorf("the cluster did not settle: %s", s.describe())
}

// describe says where each peer stands, for a walk that did not settle.
func (s *replicaSim) describe() string {
	var out string
	for _, p := range s.peers {
		var missing []string
		if p.inRound {
			missing = p.r.missingAnswers()
		}
		out += fmt.Sprintf("\n%s: head %d, held %v, requesting %v, in round %v (missing %v), failed %v, written %d, durable %d, inbox %d, refetch %v, pending %d, behind %v, owed %v, queue %d, inflight %d",
			p.id, p.r.chain.Head().Height, p.m.Held(), p.m.Requesting(), p.inRound, missing, p.r.failed, p.r.written, p.r.durable,
			len(p.r.inbox), p.r.refetchDue, len(p.r.pending), p.r.behind(), p.r.owed, len(p.queue), len(p.inflight))
	}
	return out + fmt.Sprintf("\nlinks busy: %v", s.busyLinks())
}

// run walks steps random steps with up to crashes crashes, then settles,
// lets every peer commit once more (which syncs after the last PeerUps),
// settles again and checks that the chains converged.
func (s *replicaSim) run(steps, crashes int) error {
	for range steps {
		s.step(false, &crashes)
		if err := s.check(); err != nil {
			return err
		}
	}
	// The end checks that the cluster converges, not these.
	s.storeFaults, s.fullEvery = 0, 0
	if err := s.settle(); err != nil {
		return err
	}
	// No grant and no PeerUp comes now: a peer that missed blocks (a
	// full link refused them) gets them by itself, its timers firing.
	s.busyAt = 0
	if err := s.settle(); err != nil {
		return err
	}
	if err := s.sameHeads("once the walk settled, before any grant"); err != nil {
		return err
	}
	for i := range s.peers {
		s.submit(i)
	}
	if err := s.settle(); err != nil {
		return err
	}
	if err := s.sameHeads("at the end"); err != nil {
		return err
	}
	for _, b := range s.successes {
		got, ok, err := s.peers[0].r.block(b.Height)
		if err != nil {
			return err
		}
		if !ok || got.Hash != b.Hash {
			return fmt.Errorf("the block %d %s of a transfer that reported success is not in the final chain", b.Height, b.Hash.Short())
		}
	}
	return nil
}

// sameHeads checks that every peer has the same head.
func (s *replicaSim) sameHeads(when string) error {
	head := s.peers[0].r.chain.Head()
	for _, p := range s.peers {
		if h := p.r.chain.Head(); h.Hash != head.Hash {
			return fmt.Errorf("chains differ %s: %s is at %d %s, %s at %d %s: %s",
				when, p.id, h.Height, h.Hash.Short(), s.peers[0].id, head.Height, head.Hash.Short(), s.describe())
		}
	}
	return nil
}

// simSeeds is how many seeds a walk runs: LAMPORT_LEDGER_SIM_SEEDS, or a
// few hundred.
func simSeeds(t *testing.T) int {
	if v := os.Getenv("LAMPORT_LEDGER_SIM_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if testing.Short() {
		return 30
	}
	return 300
}

// TestReplicaSimulation walks clusters of 2 to 5 peers, the real replica
// under lamportmutex.Machine (either algorithm), with crashes in every
// seed.
func TestReplicaSimulation(t *testing.T) {
	seeds := simSeeds(t)
	successes := 0
	var tally simTally
	for seed := range uint64(seeds) {
		s := newReplicaSim(t, seed, 2+int(seed%4))
		if err := s.run(600, 1+int(seed/4%5)); err != nil {
			t.Fatalf("seed %d (%d peers, %v, durability %d, batch %d, %v): %v", seed, len(s.peers), s.algo, s.durability, s.maxBatch, s.simFaults, err)
		}
		successes += len(s.successes)
		tally.add(s.tally)
	}
	t.Logf("seeds: %d, transfers that reported success: %d; store faults %d (a batch's sync under SyncBeforeRelease: %d), catch-up messages refused %d, inboxes full %d; sync rounds failed %d; retry ticks that sent %d",
		seeds, successes, tally.storeFaults, tally.kept, tally.busy, tally.full, tally.roundsFailed, tally.retried)
	if successes == 0 {
		t.Fatal("no transfer succeeded: the walk checks nothing")
	}
}

// The checks catch broken drivers: a holder that appends without the sync
// round after a PeerUp; a syncer that reports a sync the store did not
// make (a success then dies with its client's power); a committer that
// releases the mutex its node kept after its batch's sync failed under
// SyncBeforeRelease (a peer then builds other blocks at their heights,
// and the node comes back with its own); a syncer that hides a failed
// Sync; a committer that appends after a failed sync round (a peer ahead
// of it whose blocks were refused or dropped on the way).
func TestReplicaSimulationCatchesBrokenDrivers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(*replicaSim)
	}{
		{"no-sync-round", func(s *replicaSim) { s.noSync = true }},
		{"lying-syncer", func(s *replicaSim) { s.lieSync = true }},
		{"release-kept-mutex", func(s *replicaSim) { s.releaseKept = true }},
		{"hidden-sync-error", func(s *replicaSim) { s.hideSyncErr = true }},
		{"appends-after-a-failed-round", func(s *replicaSim) { s.ignoreRoundErr = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(2000) {
				s := newReplicaSim(t, seed, 2+int(seed%4))
				tc.breakIt(s)
				if err := s.run(600, 1+int(seed/4%5)); err != nil {
					t.Logf("seed %d: caught: %v", seed, err)
					return
				}
			}
			t.Fatal("no seed caught it")
		})
	}
}

// A seed replays the same walk.
func TestReplicaSimulationDeterministic(t *testing.T) {
	var heads [2]Hash
	var successes [2]int
	for k := range heads {
		s := newReplicaSim(t, 7, 4)
		if err := s.run(600, 3); err != nil {
			t.Fatal(err)
		}
		heads[k], successes[k] = s.peers[0].r.chain.Head().Hash, len(s.successes)
	}
	if heads[0] != heads[1] || successes[0] != successes[1] {
		t.Fatalf("two runs of one seed differ: heads %s and %s, %d and %d successes",
			heads[0].Short(), heads[1].Short(), successes[0], successes[1])
	}
}
