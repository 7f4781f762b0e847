package lamportmutex

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// explorer visits every state reachable in a world of a scenario: fresh
// Machines (every link carrying its first-contact PEERUP, or after first
// contact if booted), each peer making up to sc.entries requests, up to
// sc.withdrawals withdrawn while waiting, up to sc.crashes crashes in every
// way the Transport contract allows (statekey_test.go), and the transport
// dropping any message addressed to a dead incarnation. Every state is
// checked; a state where nothing but a crash can happen must have no
// request outstanding (no deadlock, every request granted).
//
// Two reductions keep the count of states down, each sound for what is
// checked (the arguments are at stateKeyer and ampleCandidates):
//   - States equal up to a renaming of peers that keeps every comparison
//     the rules can still make are one state (symmetry), and so are states
//     equal up to a renumbering of clocks that keeps every comparison any
//     path can still make (clockMap).
//   - Where some peers' moves are independent of everything the others can
//     do before they move, and none of them grants or releases, only those
//     peers' moves are taken (partial-order reduction).
//
// A state visited is remembered by 80 bits of hash in a slot of 8 bytes
// (visitedSet), so that a few hundred million fit in a few GB; the chance
// that two states share those bits, and one goes unexplored, is reported
// with the counts.
//
// Several workers may explore at once (workers): each takes states from
// its own stack, depth first, and hands the bottom half of it to the
// others when one runs dry (explorePool). Without symmetry the states
// visited are the same whatever the order, as the ample set taken at a
// state depends on the state alone. With it, they may differ by a few: of
// two states equal up to a renaming, the one met first stands for both,
// and the ample sets of the two need not be renamings of each other (the
// candidates are tried in peer order). Either is sound: the argument at
// ampleCandidates holds at whichever state is expanded, and what is
// reachable from one is, renamed, reachable from the other.
type explorer struct {
	sc       *scenario
	reduce   bool             // partial-order reduction
	symmetry bool             // symmetry reduction, and clocks renumbered (clockMap)
	workers  int              // goroutines exploring at once (0 means 1)
	limit    int              // stop with errStateLimit after this many states (0: none)
	progress func(states int) // if set, called every 2^20 states

	seen *visitedSet // the states visited
	pool explorePool

	// Totals, once run returns.
	terms    int // terminal states
	explored int // transitions taken
	reduced  int // states expanded by an ample set
}

var errStateLimit = errors.New("state limit reached")

func newExplorer(sc *scenario) *explorer { return &explorer{sc: sc, reduce: true, symmetry: true} }

func (x *explorer) states() int { return x.seen.len() }

func (x *explorer) newStart() (*world, error) {
	w, err := newWorld(x.sc, x.sc.peers[0], x.sc.algos[0], false)
	if err != nil {
		return nil, err
	}
	for p := range w.budget {
		w.budget[p] = x.sc.entries
	}
	w.withdrawals, w.crashes = x.sc.withdrawals, x.sc.crashes
	if !x.sc.withdraw {
		w.withdrawals = 0
	}
	return w, nil
}

// run explores every state and returns the first violation found, or
// errStateLimit.
func (x *explorer) run() error {
	w, err := x.newStart()
	if err != nil {
		return err
	}
	x.seen = newVisitedSet()
	keys := newStateKeyer(len(w.c.ids), x.symmetry, x.sc.algos[0])
	if err := w.k.check(w.c); err != nil {
		return x.fail(err, w, nil)
	}
	x.seen.add(keys.hashes(w))
	workers := make([]*exploreWorker, max(1, x.workers))
	x.pool.init(len(workers))
	var wg sync.WaitGroup
	for i := range workers {
		wk := &exploreWorker{x: x, keys: keys.fork()}
		if i == 0 {
			wk.stack = []frame{{w: w}}
		}
		workers[i] = wk
		wg.Go(wk.run)
	}
	wg.Wait()
	for _, wk := range workers {
		x.terms += wk.terms
		x.explored += wk.explored
		x.reduced += wk.reduced
	}
	return x.pool.err
}

// frame is a state to expand: its world, checked and recorded as seen,
// and the moves that reached it.
type frame struct {
	w    *world
	path *pathNode
}

// pathNode is the last move of a path from the start, and the path
// before it (nil at the start).
type pathNode struct {
	mv   move
	prev *pathNode
}

// moves returns the path's moves, first first.
func (p *pathNode) moves() []move {
	var mvs []move
	for ; p != nil; p = p.prev {
		mvs = append(mvs, p.mv)
	}
	slices.Reverse(mvs)
	return mvs
}

// exploreWorker explores depth first from the frames on its stack.
type exploreWorker struct {
	x     *explorer
	keys  *stateKeyer
	stack []frame

	// Buffers successors reuses from state to state: the successors it
	// returns (read before the next call), the moves taken, all moves, and
	// the candidates.
	succ, made []successor
	moves      []move
	cands      []candidate

	terms, explored, reduced int
}

// run expands frames until the exploration ends or fails.
func (wk *exploreWorker) run() {
	x := wk.x
	for !x.pool.stopped() {
		if len(wk.stack) == 0 {
			if wk.stack = x.pool.take(); wk.stack == nil {
				return
			}
		}
		f := wk.stack[len(wk.stack)-1]
		wk.stack[len(wk.stack)-1] = frame{}
		wk.stack = wk.stack[:len(wk.stack)-1]
		if err := wk.expand(f); err != nil {
			x.pool.fail(err)
			return
		}
		if x.pool.hungry() && len(wk.stack) > 1 {
			half := len(wk.stack) / 2
			x.pool.give(slices.Clone(wk.stack[:half]))
			wk.stack = slices.Delete(wk.stack, 0, half)
		}
	}
}

// successor is a move and the world after it.
type successor struct {
	mv move
	w  *world
}

// expand checks the frame's state for deadlock and pushes the successors
// not seen before, the first move's on top.
func (wk *exploreWorker) expand(f frame) error {
	x, w := wk.x, f.w
	succ, terminal, err := wk.successors(f)
	if err != nil {
		return err
	}
	if terminal {
		wk.terms++
		for _, m := range w.c.ms {
			if outstanding(m) {
				return x.fail(fmt.Errorf("deadlock: nothing but a crash can happen, but %s", machineString(m)), w, f.path)
			}
		}
	}
	for i := len(succ) - 1; i >= 0; i-- {
		s := succ[i]
		states := x.seen.add(wk.keys.hashes(s.w))
		if states == 0 {
			continue
		}
		if x.limit > 0 && states > x.limit {
			return errStateLimit
		}
		if x.progress != nil && states%(1<<20) == 0 {
			x.progress(states)
		}
		wk.stack = append(wk.stack, frame{w: s.w, path: &pathNode{mv: s.mv, prev: f.path}})
	}
	return nil
}

// successors returns the moves to take from the frame's state and the
// worlds after them, each checked; terminal reports that no move other
// than a crash is enabled.
func (wk *exploreWorker) successors(f frame) (succ []successor, terminal bool, err error) {
	x, w := wk.x, f.w
	sc := x.sc
	n := len(w.c.ids)
	succ = wk.succ[:0]
	made := wk.made[:0] // every move taken from w so far, for the candidates refused
	defer func() {
		wk.succ = succ
		clear(made) // drop the worlds, for the collector
		wk.made = made[:0]
	}()
	take := func(mvs []move) error {
	next:
		for _, mv := range mvs {
			for _, s := range made {
				if s.mv.kind != mvCrash && s.mv.kind == mv.kind && s.mv.from == mv.from && s.mv.to == mv.to && s.mv.i == mv.i {
					succ = append(succ, s)
					continue next
				}
			}
			t := w.clone()
			wk.explored++
			err := t.apply(mv)
			if err == nil {
				err = t.k.check(t.c)
			}
			if err == nil {
				err = checkSilence(w, mv, t)
			}
			if err != nil {
				return x.fail(err, t, &pathNode{mv: mv, prev: f.path})
			}
			succ = append(succ, successor{mv, t})
			made = append(made, successor{mv, t})
		}
		return nil
	}
	if x.reduce {
		wk.cands = ampleCandidates(w, sc, wk.cands)
		for _, cand := range wk.cands {
			if err := take(cand.moves); err != nil {
				return nil, false, err
			}
			if invisible(w, succ, cand.peers) {
				wk.reduced++
				return succ, false, nil
			}
			succ = succ[:0]
		}
	}
	all := wk.moves[:0]
	defer func() { wk.moves = all[:0] }()
	for p := range n {
		all = w.appendReceiveMoves(all, p, sc)
		all = w.appendLocalMoves(all, p, sc)
	}
	terminal = len(all) == 0
	if w.crashes > 0 {
		for p := range n {
			all = append(all, w.crashMoves(p)...)
		}
	}
	err = take(all) // appends to succ
	return succ, terminal, err
}

// candidate is a set of peers whose moves may be taken alone.
type candidate struct {
	peers uint // bit p: peer p is a member
	moves []move
}

// ampleCandidates returns, fewest moves first, the sets of peers whose
// moves may be taken alone from w, ignoring for now the other peers' moves,
// if none of those moves turns out visible (see invisible). This is
// partial-order reduction (the ample sets of Peled; Clarke, Grumberg and
// Peled, "Model Checking", ch. 10), with a set of peers S closed as
// stubborn sets are, and is sound when, from w:
//
//   - C0: S has a move.
//   - C1: along every path from w, no move that depends on a move of S
//     happens before some move of S. Moves of different peers are
//     independent: a move of q changes only q's Machine, pops the head of a
//     link into q and appends to links out of q, and appending to a
//     non-empty FIFO link commutes with popping its head. So what could
//     break C1 is a move of a member of S that is not enabled now and is
//     enabled by a peer outside S: a delivery on a link into S that is
//     empty now. Hence S is closed: a peer with an empty link into a member
//     is a member, unless it is silent toward that member (silentToward:
//     it can send it nothing before S moves). Then every delivery a member
//     will see before S moves is enabled now, and in the set; its own
//     requests, releases and withdrawals nobody else enables. A withdrawal
//     depends on the others' through the shared count of withdrawals, so
//     no member may have one enabled. A crash touches every peer's links,
//     so none may be left. And the reordering variant lets any message
//     overtake: it is explored in full.
//   - C2: no move of S is visible: none grants or releases (invisible).
//     The checker reads only holders, the tokens of grants, and, at a
//     grant, the links into the new holder for RELEASEs with payloads,
//     which only a release (visible) sends; so an invisible move of S also
//     commutes with the checker's work on a move outside S.
//   - C3: there is no cycle to close: every move consumes a budget or
//     delivers a message, and only moves that consume a budget make
//     messages, so every path is finite.
//
// Under C0 to C3, every violation of a checked invariant and every
// deadlock that a path from w reaches is reached by a path whose first
// move is one of S's, with the same sequence of grants and releases: move
// the first of S's moves on the path to the front (C1 lets it commute with
// every move before it; C2 keeps the holders and the checker's findings
// unchanged at each step), or, if the path has none, prefix any move of S,
// which stays enabled throughout by C1 (a deadlock has no move enabled, so
// every path to one has a move of S).
func ampleCandidates(w *world, sc *scenario, buf []candidate) []candidate {
	out := buf[:0]
	if w.crashes > 0 || sc.variant == variantReorder {
		return out
	}
	n := len(w.c.ids)
	all := uint(1)<<n - 1
	for p := range n {
		in := uint(1) << p
		for grew := true; grew; {
			grew = false
			for q := range n {
				if in&(1<<q) == 0 {
					continue
				}
				for r := range n {
					if in&(1<<r) == 0 && len(w.c.links[r][q]) == 0 && !w.silentToward(r, q) {
						in, grew = in|1<<r, true
					}
				}
			}
		}
		if in == all || slices.ContainsFunc(out, func(c candidate) bool { return c.peers == in }) {
			continue
		}
		var mvs []move
		if len(out) < cap(out) {
			mvs = out[: len(out)+1 : cap(out)][len(out)].moves[:0] // that slot's array, for reuse
		}
		ok := true
		for q := range n {
			if in&(1<<q) != 0 {
				// A holder's release is visible: invisible would refuse
				// the set, so it is not worth trying.
				ok = ok && !(sc.withdraw && w.canWithdraw(q)) && !w.c.ms[q].Held()
				mvs = w.appendReceiveMoves(mvs, q, sc)
				mvs = w.appendLocalMoves(mvs, q, sc)
			}
		}
		if ok && len(mvs) > 0 {
			out = append(out, candidate{peers: in, moves: mvs})
		}
	}
	slices.SortStableFunc(out, func(a, b candidate) int { return len(a.moves) - len(b.moves) })
	return out
}

// silentToward reports whether peer r can send peer q nothing, whatever
// moves peers other than q make, until q moves. A Machine sends to q only
// when it requests (an idle one with budget left, or a pending one once
// synced), releases (a holder, a waiting request withdrawn, an abandoned
// one once granted), answers a REQUEST of q's, or greets q after q's
// PeerUp; only q adds those last two to the link q->r. (It answers other
// peers' REQUESTs and PeerUps to them alone.) So r is silent toward q when
// no REQUEST or PEERUP from q is in flight to it and either
//
//   - r is idle with no requests left in its budget, or
//   - r's request is stamped and not held, r cannot withdraw it, and r
//     cannot be granted before q moves (stalledBy): then it neither
//     enters, nor releases, nor requests again.
//
// Crashes are left out: no ample set is taken while one is left.
func (w *world) silentToward(r, q int) bool {
	for _, e := range w.c.links[q][r] {
		if e.msg.Kind == Request || e.msg.Kind == PeerUp {
			return false
		}
	}
	m := w.c.ms[r]
	switch m.state {
	case idle:
		return w.budget[r] == 0
	case waiting, abandoned:
		return !w.canWithdraw(r) && w.stalledBy(r, q)
	}
	return false
}

// stalledBy reports whether peer r's stamped request cannot be granted,
// whatever moves peers other than q make, until q moves: the entry rule
// (Machine.tryEnter) needs both parts below, and one of them fails and
// only a message from q can change it, and none that could is in flight
// on the link q->r (no PEERUP either, which silentToward rules out).
//
//   - Part ii, q's answer: the rules' answered(r, q) is false, and no
//     message from q in flight could make it true: under Lamport's rules a
//     message stamped later than r's request (latest[q] only grows by q's
//     messages), under Ricart-Agrawala's a REPLY (only a REPLY from q sets
//     replied[q], and it is cleared only when a request is stamped).
//   - Part i, the head of the queue: q's request is queued ahead of r's,
//     and no RELEASE from q is in flight. Only q's RELEASE or PEERUP
//     removes q's request from r's queue, and r's own request stays put
//     while it is stamped.
func (w *world) stalledBy(r, q int) bool {
	m := w.c.ms[r]
	l := w.c.links[q][r]
	if !m.rules.answered(m, q) && !slices.ContainsFunc(l, func(e envelope) bool {
		return e.msg.Kind == Reply || e.msg.Kind != PeerUp && e.msg.Clock > m.own.Clock
	}) {
		return true
	}
	qid := w.c.ids[q]
	ahead := slices.ContainsFunc(m.q, func(t Token) bool { return t.ID == qid && t.Less(m.own) })
	return ahead && !slices.ContainsFunc(l, func(e envelope) bool { return e.msg.Kind == Release })
}

// checkSilence returns an error if move mv, which took w to t, breaks what
// silentToward claims: a peer r silent toward q at w sent q nothing, and
// is still silent toward q at t unless q made the move. Checked on every
// move the explorer takes, with or without the reductions, so a Machine
// that breaks the claim fails the exploration rather than hiding states.
func checkSilence(w *world, mv move, t *world) error {
	if w.crashes > 0 || mv.kind == mvCrash || mv.kind == mvInject {
		return nil
	}
	mover := mv.from
	if mv.kind == mvDeliver || mv.kind == mvDrop {
		mover = mv.to
	}
	for r := range w.c.ids {
		for q := range w.c.ids {
			if r == q || q == mover || !w.silentToward(r, q) {
				continue
			}
			if len(t.c.links[r][q]) != len(w.c.links[r][q]) || !t.silentToward(r, q) {
				return fmt.Errorf("explorer: %s, silent toward %s, is not after %s", w.c.ids[r], w.c.ids[q], w.describe(mv))
			}
		}
	}
	return nil
}

// invisible reports whether no successor changed which Machine holds the
// lock (C2 of ampleCandidates). Only members' Machines change in any of
// them; a member's move acts on it alike whatever the others did meanwhile
// (until S moves, its Machine and the heads of the links into it stay as
// they are), so a move invisible at w is invisible wherever the paths in
// the argument take it.
func invisible(w *world, succ []successor, members uint) bool {
	for _, s := range succ {
		for p := range w.c.ms {
			if members&(1<<p) != 0 && s.w.c.ms[p].Held() != w.c.ms[p].Held() {
				return false
			}
		}
	}
	return true
}

// exploreError carries the trace to a violation.
type exploreError struct {
	err   error
	trace []string
	state string
}

func (e *exploreError) Error() string {
	return fmt.Sprintf("%v\ntrace (%d moves):\n  %s\nstate:\n%s", e.err, len(e.trace), strings.Join(e.trace, "\n  "), e.state)
}

func (e *exploreError) Unwrap() error { return e.err }

// fail reports err in world w, reached by path. Workers may call it at
// once: it replays the path from its own copy of the start.
func (x *explorer) fail(err error, w *world, path *pathNode) error {
	var b strings.Builder
	for _, m := range w.c.ms {
		b.WriteString("  " + machineString(m) + "\n")
	}
	for f := range w.c.ids {
		for t := range w.c.ids {
			if len(w.c.links[f][t]) > 0 {
				b.WriteString("  " + w.c.linkString(f, t) + "\n")
			}
		}
	}
	// Replay the path from the start to name every move.
	r, rerr := x.newStart()
	if rerr != nil {
		return fmt.Errorf("%w (and replaying its trace: %v)", err, rerr)
	}
	var trace []string
	if x.sc.booted {
		trace = append(trace, "(booted: first contact over)")
	}
	for _, mv := range path.moves() {
		trace = append(trace, r.describe(mv))
		_ = r.apply(mv)
	}
	return &exploreError{err: err, trace: trace, state: b.String()}
}

// TestExploreEveryInterleaving explores every interleaving of the small
// groups in the scenario table: never two holders, grants in token order,
// payloads handled before the next entry, and no deadlock, in every state.
// The scenarios marked slow skip themselves under -short or -race, and
// the soak ones run only with LAMPORT_SOAK set (any value); those explore
// with a worker per CPU.
func TestExploreEveryInterleaving(t *testing.T) {
	_, soak := envUint(t, envSoak)
	for i := range scenarios {
		sc := &scenarios[i]
		if !sc.explore || sc.variant != variantNone {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			switch {
			case sc.soak && !soak:
				t.Skip("large: set " + envSoak)
			case sc.slow && !soak && (testing.Short() || raceEnabled):
				t.Skip("slow under -short or -race: set " + envSoak)
			}
			start := time.Now()
			x := newExplorer(sc)
			if soak {
				x.workers = runtime.GOMAXPROCS(0)
				defer debug.SetGCPercent(debug.SetGCPercent(100))
				x.progress = func(states int) {
					t.Logf("%d states, %v", states, time.Since(start).Round(time.Second))
					// The visited set is most of the live heap, and holds
					// no pointers: once it is large, collect when the heap
					// has grown by a quarter GiB rather than by as much
					// again, so that the peak stays near the set's size.
					debug.SetGCPercent(max(10, min(100, 100*(1<<28)/max(1, x.seen.bytes()))))
				}
			}
			if err := x.run(); err != nil {
				t.Fatalf("after %d states: %v", x.states(), err)
			}
			t.Logf("%s: %d distinct states, %d terminal, %d transitions, %d states expanded by an ample set, in %v "+
				"(%d workers); visited set %d MiB, chance that a hash collision left a state unexplored < %.1g",
				sc.name, x.states(), x.terms, x.explored, x.reduced, time.Since(start).Round(time.Millisecond),
				max(1, x.workers), x.seen.bytes()>>20, omissionBound(x.states()))
		})
	}
}

// TestExploreWorkersAgree explores with one worker and with several (more
// than there are CPUs, so that they hand frames to each other often),
// with partial-order reduction and without symmetry: the counts of states,
// terminal states, transitions and ample sets are the same, as each state
// is expanded once whatever the order; and a broken variant is caught
// either way.
func TestExploreWorkersAgree(t *testing.T) {
	names := []string{"lamport/peers=2/entries=3", "lamport/peers=2/entries=2/withdrawals=1", "lamport/peers=2/entries=2/crashes=1", "explore/enter-early"}
	if !testing.Short() && !raceEnabled {
		names = append(names, "ricart-agrawala/peers=3/entries=1")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc := scenarioNamed(t, name)
			one, many := newExplorer(sc), newExplorer(sc)
			one.symmetry, many.symmetry = false, false
			many.workers = 5
			errOne, errMany := one.run(), many.run()
			if (errOne == nil) != (errMany == nil) || (sc.variant != variantNone) != (errOne != nil) {
				t.Fatalf("one worker: %v\nfive: %v", errOne, errMany)
			}
			if errOne != nil {
				return
			}
			a := [4]int{one.states(), one.terms, one.explored, one.reduced}
			b := [4]int{many.states(), many.terms, many.explored, many.reduced}
			if a != b {
				t.Fatalf("states, terminal, transitions, ample sets: one worker %v, five %v", a, b)
			}
			t.Logf("%d states", a[0])
		})
	}
}

// TestExploreReductionsKeepVerdicts explores small groups with and without
// the reductions: the reduced runs visit fewer states and both pass, and
// both catch the broken entry rule and a waiting Machine that breaks what
// silentToward claims of it.
func TestExploreReductionsKeepVerdicts(t *testing.T) {
	names := []string{"lamport/peers=2/entries=2/withdrawals=1", "ricart-agrawala/peers=2/entries=2", "lamport/peers=2/entries=1/crashes=1", "explore/enter-early", "explore/enter-early/ricart-agrawala", "explore/enter-early/peers=3", "explore/chatty-waiting"}
	if !testing.Short() && !raceEnabled {
		names = append(names, "ricart-agrawala/peers=3/entries=1")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc := scenarioNamed(t, name)
			full, reduced := newExplorer(sc), newExplorer(sc)
			full.reduce, full.symmetry = false, false
			errFull, errReduced := full.run(), reduced.run()
			if (errFull == nil) != (errReduced == nil) {
				t.Fatalf("full: %v\nreduced: %v", errFull, errReduced)
			}
			if errFull == nil && reduced.states() > full.states() {
				t.Errorf("reduced %d states > full %d", reduced.states(), full.states())
			}
			t.Logf("full %d states, reduced %d", full.states(), reduced.states())
		})
	}
}

func scenarioNamed(t *testing.T, name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name && scenarios[i].explore {
			return &scenarios[i]
		}
	}
	t.Fatalf("no scenario %q", name)
	return nil
}
