package lamportmutex

// A wider, crash-heavy simulation and an exhaustive explorer with crashes,
// from an adversarial review of the restart protocol. Long searches run
// only with LAMPORT_REVIEW_SOAK set.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
) // reviewSimConfig is one kind of run of the review's wider simulation.
type reviewSimConfig struct {
	n        int
	steps    int
	crashPct int  // per-step crash probability, in percent
	twice    bool // a crash is sometimes followed at once by another of the same peer
	holder   bool // crashes hit the holder (or a releaser) more often
	dropOld  bool // messages addressed to a dead incarnation are sometimes dropped at delivery
	broken   bool // fault: Machines ignore the latest rule (checker check only)
	strict   bool // grant order starts afresh only when no live Machine remembers the greatest grant
	ra       bool // the Machines run Ricart-Agrawala
}

func runReviewSimBroken(seed uint64, cfg reviewSimConfig) (int, error) {
	cfg.broken = true
	return runReviewSim(seed, cfg, nil)
}

// reviewConfigFor derives a configuration from a seed: 2 to 7 peers,
// crash rates up to 25% per step, Ricart-Agrawala on every other seed
// block of 240.
func reviewConfigFor(seed uint64, steps int) reviewSimConfig {
	return reviewSimConfig{
		n:        2 + int(seed%6),
		steps:    steps,
		crashPct: []int{1, 3, 8, 15, 25}[(seed/6)%5],
		twice:    (seed/30)%2 == 0,
		holder:   (seed/60)%2 == 0,
		dropOld:  (seed/120)%2 == 0,
		ra:       (seed/240)%2 == 1,
	}
}

// runReviewSim is runSim with more peers, heavier and nastier crashes, and
// transports that drop messages addressed to dead incarnations.
func runReviewSim(seed uint64, cfg reviewSimConfig, logf func(string, ...any)) (int, error) {
	rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
	c, err := newCluster(peerIDs(cfg.n), cfg.broken, true, simConfig{ra: cfg.ra}.options()...)
	if err != nil {
		return 0, err
	}
	c.logf = logf
	k := newChecker(cfg.n)
	entries := make([]int, cfg.n)
	deliver := func() (bool, error) {
		f, t, ok := c.randomLink(rng)
		if !ok {
			return false, nil
		}
		e := c.links[f][t][0]
		if cfg.dropOld && e.msg.Kind != PeerUp && e.msg.Incarnation != uint64(c.inc[t]) && rng.IntN(2) == 0 {
			// The transport drops a message for a dead incarnation.
			c.links[f][t] = c.links[f][t][1:]
			c.forget([]envelope{e})
			c.say("transport drops %v (for a dead incarnation)", e.msg)
			return true, nil
		}
		return true, c.deliver(f, t, 0)
	}
	release := func(p int) error {
		entries[p]++
		return c.release(p, fmt.Appendf(nil, "%s:%d:%d", c.ids[p], c.inc[p], entries[p]))
	}
	pick := func(ok func(*Machine) bool) int {
		start := rng.IntN(cfg.n)
		for i := range cfg.n {
			if p := (start + i) % cfg.n; ok(c.ms[p]) {
				return p
			}
		}
		return -1
	}
	crash := func(p int) error {
		if err := c.crashRandomly(rng, p); err != nil {
			return err
		}
		if !cfg.strict {
			k.crashed(c, p)
			return nil
		}
		k.held[p] = false
		known := false
		for q, m := range c.ms {
			known = known || q != p && m.clock >= k.maxTok.Clock
		}
		if k.haveMax && !known {
			k.haveMax = false
			k.resets++
		}
		return nil
	}
	step := func() error {
		r := rng.IntN(100)
		switch {
		case r < cfg.crashPct:
			p := rng.IntN(cfg.n)
			if h := c.holder(); cfg.holder && h >= 0 && rng.IntN(2) == 0 {
				p = h
			}
			if err := crash(p); err != nil {
				return err
			}
			if cfg.twice && rng.IntN(3) == 0 {
				return crash(p)
			}
			return nil
		case r < cfg.crashPct+15:
			if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
				return c.request(p)
			}
		case r < cfg.crashPct+28:
			if p := c.holder(); p >= 0 {
				if err := release(p); err != nil {
					return err
				}
				if cfg.holder && rng.IntN(100) < cfg.crashPct {
					return crash(p) // between the deliveries of its release
				}
				return nil
			}
		case r < cfg.crashPct+32:
			if p := pick(func(m *Machine) bool { return m.Requesting() && !m.Held() }); p >= 0 {
				return c.release(p, nil)
			}
		}
		if ok, err := deliver(); ok || err != nil {
			return err
		}
		if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
			return c.request(p)
		}
		if p := c.holder(); p >= 0 {
			return release(p)
		}
		return fmt.Errorf("deadlock: every peer requests, none holds, no message in flight")
	}
	return simulate(c, k, cfg.steps, 200_000, step, release, deliver)
}

// TestReviewSimulation runs the wider simulation: 600 seeds of 300 steps
// normally; LAMPORT_REVIEW_SOAK=steps runs seeds of 3000 steps until that
// many steps; LAMPORT_REVIEW_SEED=n replays one seed with a trace.
func TestReviewSimulation(t *testing.T) {
	if seed, ok := envUint(t, "LAMPORT_REVIEW_SEED"); ok {
		steps := 3000
		if n, ok := envUint(t, "LAMPORT_REVIEW_STEPS"); ok {
			steps = int(n)
		}
		cfg := reviewConfigFor(seed, steps)
		cfg.strict = os.Getenv("LAMPORT_REVIEW_STRICT") != ""
		var trace strings.Builder
		n, err := runReviewSim(seed, cfg, func(f string, a ...any) { fmt.Fprintf(&trace, f+"\n", a...) })
		t.Logf("seed %d %+v, %d steps:\n%s", seed, cfg, n, trace.String())
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	soak, isSoak := envUint(t, "LAMPORT_REVIEW_SOAK")
	steps, seeds := 300, uint64(600)
	if raceEnabled {
		seeds = 200
	}
	if isSoak {
		steps = 3000
	}
	total, first := 0, uint64(1)
	if f, ok := envUint(t, "LAMPORT_REVIEW_FIRST"); ok {
		first = f
	}
	start := time.Now()
	var seed uint64
	for seed = first; isSoak && uint64(total) < soak || !isSoak && seed < first+seeds; seed++ {
		cfg := reviewConfigFor(seed, steps)
		n, err := runReviewSim(seed, cfg, nil)
		total += n
		if err != nil {
			t.Fatalf("seed %d %+v: %v\nreplay: LAMPORT_REVIEW_SEED=%d LAMPORT_REVIEW_STEPS=%d go test ./lamportmutex -run TestReviewSimulation -v",
				seed, cfg, err, seed, steps)
		}
	}
	t.Logf("%d seeds, %d steps in %v", seed-first, total, time.Since(start).Round(time.Millisecond))
}

// TestReviewStrictGrantOrder looks for a grant whose token is not greater
// than an earlier one while some live Machine still remembers the greatest
// grant (Token's doc promises that tokens of successive grants strictly
// increase; the checker excuses every crash that overlaps a restart).
// Only with LAMPORT_REVIEW_SOAK.
func TestReviewStrictGrantOrder(t *testing.T) {
	soak, ok := envUint(t, "LAMPORT_REVIEW_SOAK")
	if !ok {
		t.Skip("set LAMPORT_REVIEW_SOAK")
	}
	total := 0
	for seed := uint64(1); uint64(total) < soak; seed++ {
		cfg := reviewConfigFor(seed, 1000)
		cfg.strict = true
		n, err := runReviewSim(seed, cfg, nil)
		total += n
		if err != nil {
			t.Fatalf("seed %d %+v: %v", seed, cfg, err)
		}
	}
}

// TestReviewSimulationCatches checks that the wider simulation can fail:
// Machines that ignore the latest rule must be caught.
func TestReviewSimulationCatches(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		cfg := reviewConfigFor(seed, 300)
		if _, err := runReviewSimBroken(seed, cfg); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return
		}
	}
	t.Fatal("no violation found with skipLatest set")
}

// crashExplorer visits every state reachable from n fresh Machines (or
// booted ones) where each peer makes up to budget requests, up to
// withdrawals are withdrawn, up to crashes crashes happen, each in every
// way the contract allows (every prefix of each outbound link survives,
// each inbound link is dropped or kept), and a transport may drop any
// message addressed to a dead incarnation. Every state is checked; a
// state where nothing but a crash can happen must have no request
// outstanding.
type crashExplorer struct {
	n, budget, withdrawals, crashes int
	booted                          bool
	broken                          bool // fault: Machines ignore the latest rule
	limit                           int

	seen  map[[16]byte]struct{}
	terms int
	hash  *stateHasher
	path  []string
}

type cxState struct {
	c       *cluster
	k       *checker
	budget  []int
	withdr  int
	crashes int
	entries int
}

type cxMove struct {
	kind     byte // 'd' deliver, 'x' drop (dead incarnation), 'r', 'l', 'w', 'c' crash
	from, to int
	keep     []int
	drop     []bool
}

func (x *crashExplorer) run() error {
	c, err := newCluster(peerIDs(x.n), x.broken, false)
	if err != nil {
		return err
	}
	if x.booted {
		if err := boot(c); err != nil {
			return err
		}
	}
	s := &cxState{c: c, k: newChecker(x.n), budget: make([]int, x.n), withdr: x.withdrawals, crashes: x.crashes}
	for i := range s.budget {
		s.budget[i] = x.budget
	}
	x.seen = map[[16]byte]struct{}{}
	x.hash = newStateHasher()
	return x.dfs(s)
}

func (x *crashExplorer) moves(s *cxState) (moves []cxMove, other int) {
	c := s.c
	for f := range c.ids {
		for t := range c.ids {
			if len(c.links[f][t]) == 0 {
				continue
			}
			moves = append(moves, cxMove{kind: 'd', from: f, to: t})
			if e := c.links[f][t][0]; e.msg.Kind != PeerUp && e.msg.Incarnation != uint64(c.inc[t]) {
				moves = append(moves, cxMove{kind: 'x', from: f, to: t})
			}
		}
	}
	for p, m := range c.ms {
		switch {
		case m.Held():
			moves = append(moves, cxMove{kind: 'l', from: p})
		case m.Requesting():
			if s.withdr > 0 {
				moves = append(moves, cxMove{kind: 'w', from: p})
			}
		case s.budget[p] > 0:
			moves = append(moves, cxMove{kind: 'r', from: p})
		}
	}
	other = len(moves)
	if s.crashes > 0 {
		for p := range c.ids {
			// Every combination of kept prefixes and inbound drops.
			var rec func(q int, keep []int, drop []bool)
			rec = func(q int, keep []int, drop []bool) {
				if q == len(c.ids) {
					moves = append(moves, cxMove{kind: 'c', from: p, keep: slices.Clone(keep), drop: slices.Clone(drop)})
					return
				}
				if q == p {
					rec(q+1, keep, drop)
					return
				}
				for k := 0; k <= len(c.links[p][q]); k++ {
					for _, d := range []bool{false, true} {
						if d && len(c.links[q][p]) == 0 {
							continue // nothing to drop: same as keeping
						}
						keep[q], drop[q] = k, d
						rec(q+1, keep, drop)
					}
				}
			}
			rec(0, make([]int, x.n), make([]bool, x.n))
		}
	}
	return moves, other
}

func (s *cxState) apply(mv cxMove) error {
	c := s.c
	switch mv.kind {
	case 'd':
		return c.deliver(mv.from, mv.to, 0)
	case 'x':
		c.links[mv.from][mv.to] = c.links[mv.from][mv.to][1:]
		return nil
	case 'r':
		s.budget[mv.from]--
		return c.request(mv.from)
	case 'l':
		s.entries++
		return c.release(mv.from, fmt.Appendf(nil, "e%d", s.entries))
	case 'w':
		s.withdr--
		return c.release(mv.from, nil)
	default:
		s.crashes--
		if err := c.crash(mv.from, mv.keep, mv.drop); err != nil {
			return err
		}
		s.k.crashed(c, mv.from)
		return nil
	}
}

func (s *cxState) describe(mv cxMove) string {
	c := s.c
	switch mv.kind {
	case 'd':
		return fmt.Sprintf("deliver %v", c.links[mv.from][mv.to][0].msg)
	case 'x':
		return fmt.Sprintf("drop %v (for a dead incarnation)", c.links[mv.from][mv.to][0].msg)
	case 'r':
		return "request " + c.ids[mv.from]
	case 'l':
		return "release " + c.ids[mv.from]
	case 'w':
		return "withdraw " + c.ids[mv.from]
	default:
		return fmt.Sprintf("crash %s keep=%v dropIn=%v", c.ids[mv.from], mv.keep, mv.drop)
	}
}

func (x *crashExplorer) dfs(s *cxState) error {
	key := x.key(s)
	if _, ok := x.seen[key]; ok {
		return nil
	}
	x.seen[key] = struct{}{}
	if x.limit > 0 && len(x.seen) > x.limit {
		return errStateLimit
	}
	moves, other := x.moves(s)
	if other == 0 {
		x.terms++
		for _, m := range s.c.ms {
			if outstanding(m) {
				return fmt.Errorf("deadlock: nothing but a crash can happen, but %s\ntrace:\n  %s", machineString(m), strings.Join(x.path, "\n  "))
			}
		}
	}
	for _, mv := range moves {
		t := &cxState{c: s.c.clone(), k: s.k.clone(), budget: slices.Clone(s.budget), withdr: s.withdr, crashes: s.crashes, entries: s.entries}
		x.path = append(x.path, t.describe(mv))
		err := t.apply(mv)
		if err == nil {
			err = t.k.check(t.c)
		}
		if err != nil {
			return fmt.Errorf("%w\ntrace:\n  %s", err, strings.Join(x.path, "\n  "))
		}
		if err := x.dfs(t); err != nil {
			return err
		}
		x.path = x.path[:len(x.path)-1]
	}
	return nil
}

func (x *crashExplorer) key(s *cxState) [16]byte {
	return x.hash.key(s.c, s.k, append(slices.Clone(s.budget), s.withdr, s.crashes, s.entries)...)
}

// TestReviewExploreCrashes explores every interleaving, crashes included,
// of small configurations. The larger ones run with LAMPORT_REVIEW_SOAK.
func TestReviewExploreCrashes(t *testing.T) {
	type config struct {
		n, budget, withdrawals, crashes int
		booted, heavy, big              bool
	}
	t.Run("catches skipLatest", func(t *testing.T) {
		x := &crashExplorer{n: 2, budget: 1, crashes: 1, broken: true}
		if err := x.run(); err == nil {
			t.Fatalf("no violation found with skipLatest set (%d states)", len(x.seen))
		}
	})
	configs := []config{
		{n: 2, budget: 1, crashes: 1},
		{n: 2, budget: 1, crashes: 2, heavy: true},
		{n: 2, budget: 2, crashes: 1, heavy: true},
		{n: 2, budget: 1, withdrawals: 1, crashes: 1},
		{n: 2, budget: 2, crashes: 2, big: true},
		{n: 2, budget: 2, withdrawals: 1, crashes: 2, big: true},
		{n: 3, budget: 1, crashes: 1, booted: true, big: true},
		{n: 3, budget: 1, crashes: 2, booted: true, big: true},
	}
	_, soak := envUint(t, "LAMPORT_REVIEW_SOAK")
	for _, cf := range configs {
		name := fmt.Sprintf("peers=%d/entries=%d/withdrawals=%d/crashes=%d/booted=%v", cf.n, cf.budget, cf.withdrawals, cf.crashes, cf.booted)
		t.Run(name, func(t *testing.T) {
			if cf.big && !soak || cf.heavy && raceEnabled && !soak {
				t.Skip("large: set LAMPORT_REVIEW_SOAK")
			}
			start := time.Now()
			x := &crashExplorer{n: cf.n, budget: cf.budget, withdrawals: cf.withdrawals, crashes: cf.crashes, booted: cf.booted}
			if err := x.run(); err != nil {
				t.Fatalf("after %d states: %v", len(x.seen), err)
			}
			t.Logf("%d distinct states, %d terminal, in %v", len(x.seen), x.terms, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestReviewGrantOrderOverlappingRestarts: Token's doc promises that
// tokens of successive grants strictly increase (a fencing token). Across
// overlapping restarts they do not, although a live Machine remembers the
// greatest grant all along: 1 is granted (29,1); 2 and 3 restart and greet
// each other with low clocks; 1 greets the new 3 (whose clock so passes
// the grant) and then crashes before greeting the new 2. The new 2 is
// then synced by two low HELLOs and is granted a smaller token, while the
// new 3 still remembers a clock above the earlier grant. (Found by the
// strict variant of the review simulation, seed 589, 3 peers.)
func TestReviewGrantOrderOverlappingRestarts(t *testing.T) {
	c, err := newCluster(peerIDs(3), false, true)
	if err != nil {
		t.Fatal(err)
	}
	c.logf = t.Logf
	do := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	drain := func(from, to int) {
		t.Helper()
		for len(c.links[from][to]) > 0 {
			do("deliver", c.deliver(from, to, 0))
		}
	}
	all := func(p int) []int { return []int{p, p, p} }
	const p1, p2, p3 = 0, 1, 2
	do("boot", boot(c))
	var first Token
	for range 5 { // a few entries, so that clocks are well past a fresh start
		do("request 1", c.request(p1))
		do("settle", boot(c))
		first, _ = c.ms[p1].Own()
		if !c.ms[p1].Held() {
			t.Fatalf("1 should hold: %s", machineString(c.ms[p1]))
		}
		do("release 1", c.release(p1, []byte("x")))
		do("settle", boot(c))
	}
	// Each restarted peer starts from the clock it kept, as Config.StartClock
	// does with the clock of the ledger's last block. Without that, the new
	// 2 below is granted (6,2) after (29,1): the order across overlapping
	// restarts is owed only to a peer that keeps its clock (see the package
	// doc).
	do("restart 2", c.crash(p2, all(99), []bool{true, true, true}))
	c.ms[p2].AdvanceClock(first.Clock)
	do("restart 3", c.crash(p3, all(99), []bool{true, true, true}))
	c.ms[p3].AdvanceClock(first.Clock)
	do("request 2", c.request(p2)) // held back: not synced
	// The new 2 and the new 3 greet each other with low clocks.
	drain(p2, p3)
	drain(p3, p2)
	drain(p2, p3)
	// 1 greets the new 3 (HELLO with 1's clock), which learns the clock.
	drain(p3, p1)
	drain(p1, p3)
	if c.ms[p3].Clock() <= first.Clock {
		t.Fatalf("3 should remember a clock above %v: %s", first, machineString(c.ms[p3]))
	}
	// 1 crashes before handling PEERUP from the new 2.
	do("restart 1", c.crash(p1, all(0), []bool{true, true, true}))
	c.ms[p1].AdvanceClock(first.Clock)
	do("settle", boot(c))
	for c.holder() < 0 && c.busy() {
		do("settle", boot(c))
	}
	if h := c.holder(); h != p2 {
		t.Fatalf("expected 2 to hold; holder %d", h)
	}
	tok, _ := c.ms[p2].Own()
	if !first.Less(tok) {
		t.Errorf("grant order: 2 is granted %v after %v was granted, while 3 (never down since) remembers clock %d: %s",
			tok, first, c.ms[p3].Clock(), machineString(c.ms[p3]))
	}
}
