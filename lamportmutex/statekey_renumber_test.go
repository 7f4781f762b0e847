package lamportmutex

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// renumbered returns w with every clock v renumbered f.of(v): the
// Machines' clocks, stamps and queues, the clocks in flight and the
// checker's greatest grant. Of latest[j], and of a dominated clock in
// flight, which the key holds only as their comparison with the
// receiver's stamp, it keeps that comparison: the clock becomes just
// after the renumbered stamp if later, else 0. f must be what
// stateKeyer.setClocks made for w.
func renumbered(w *world, f *clockMap) *world {
	d := w.clone()
	c := d.c
	for p := range c.ms {
		m := c.mutable(p)
		stamped := m.state.stamped()
		for j := range m.peers {
			later := stamped && m.peers[j].latest > m.own.Clock
			m.peers[j].latest = 0
			if later {
				m.peers[j].latest = f.of(m.own.Clock) + 1
			}
		}
		m.clock = f.of(m.clock)
		if stamped {
			m.own.Clock = f.of(m.own.Clock)
		}
		for i := range m.q {
			m.q[i].Clock = f.of(m.q[i].Clock)
		}
	}
	for from, row := range c.links {
		for to, l := range row {
			l = slices.Clone(l)
			for i := range l {
				msg := &l[i].msg
				m := w.c.ms[to]
				switch {
				case msg.Kind == PeerUp:
				case f.dominated(msg, m.clock):
					later := m.state.stamped() && msg.Clock > m.own.Clock
					msg.Clock = 0
					if later {
						msg.Clock = f.of(m.own.Clock) + 1
					}
				default:
					msg.Clock = f.of(msg.Clock)
				}
			}
			c.links[from][to] = l
		}
	}
	if d.k.haveMax {
		d.k.maxTok.Clock = f.of(d.k.maxTok.Clock)
	}
	return d
}

// allMoves returns every move enabled at w, crashes included, in the
// explorer's order.
func allMoves(w *world, sc *scenario) []move {
	var mvs []move
	for p := range w.c.ids {
		mvs = w.appendReceiveMoves(mvs, p, sc)
		mvs = w.appendLocalMoves(mvs, p, sc)
		if w.crashes > 0 {
			mvs = append(mvs, w.crashMoves(p)...)
		}
	}
	return mvs
}

// step returns the world after mv and the error of the move or of the
// check after it.
func step(w *world, mv move) (*world, error) {
	t := w.clone()
	err := t.apply(mv)
	if err == nil {
		err = t.k.check(t.c)
	}
	return t, err
}

// checkRenumbered checks, at a state w with no crash left, that w
// renumbered as its key renumbers it has w's key, and that each move leads
// from both to states with one key, or fails a check in both. It reports
// whether the renumbering narrowed a gap (did more than shift every
// clock).
func checkRenumbered(w *world, sc *scenario, keys *stateKeyer) (narrowed bool, err error) {
	h1, h2 := keys.hashes(w)
	f := keys.renumber
	f.from, f.to = slices.Clone(f.from), slices.Clone(f.to)
	narrowed = f.to[len(f.to)-1] != f.from[len(f.from)-1]-f.from[0]
	fail := func(format string, args ...any) error {
		return fmt.Errorf("renumbering %v as %v: %s at\n%s", f.from, f.to, fmt.Sprintf(format, args...), worldString(w))
	}
	r := renumbered(w, &f)
	if g1, g2 := keys.hashes(r); g1 != h1 || g2 != h2 {
		return narrowed, fail("the key changes")
	}
	mvs, rmvs := allMoves(w, sc), allMoves(r, sc)
	if len(rmvs) != len(mvs) {
		return narrowed, fail("the moves change")
	}
	for i, mv := range mvs {
		t, err := step(w, mv)
		u, rerr := step(r, rmvs[i])
		if (err == nil) != (rerr == nil) {
			return narrowed, fail("%s gives %v, renumbered %v", w.describe(mv), err, rerr)
		}
		if err != nil {
			continue
		}
		a1, a2 := keys.hashes(t)
		if b1, b2 := keys.hashes(u); a1 != b1 || a2 != b2 {
			return narrowed, fail("the state after %s changes:\n%s\nrenumbered, after:\n%s", w.describe(mv), worldString(t), worldString(u))
		}
	}
	return narrowed, nil
}

// checkRenumberings runs checkRenumbered, with a keyer whose gaps are at
// most gapMax, at every state of sc with no crash left: of walks random
// walks, or, if walks is 0, of a search of every state, one of each key.
// It returns how many states had a gap narrowed, and the first
// disagreement.
func checkRenumberings(sc *scenario, walks int, gapMax func(*world) uint64) (narrowed int, err error) {
	x := newExplorer(sc)
	start, err := x.newStart()
	if err != nil {
		return 0, err
	}
	keys := newStateKeyer(len(start.c.ids), true, sc.algos[0])
	keys.gapMax = gapMax
	visit := func(w *world) ([]*world, error) {
		if w.crashes == 0 {
			n, err := checkRenumbered(w, sc, keys)
			if n {
				narrowed++
			}
			if err != nil {
				return nil, err
			}
		}
		var next []*world
		for _, mv := range allMoves(w, sc) {
			if t, err := step(w, mv); err == nil {
				next = append(next, t)
			}
		}
		return next, nil
	}
	if walks == 0 {
		seen := map[[2]uint64]bool{}
		stack := []*world{start}
		for len(stack) > 0 {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			next, err := visit(w)
			if err != nil {
				return narrowed, err
			}
			for _, t := range next {
				h1, h2 := keys.hashes(t)
				if !seen[[2]uint64{h1, h2}] {
					seen[[2]uint64{h1, h2}] = true
					stack = append(stack, t)
				}
			}
		}
		return narrowed, nil
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range walks {
		for w := start; ; {
			next, err := visit(w)
			if err != nil {
				return narrowed, err
			}
			if len(next) == 0 {
				break
			}
			w = next[rng.IntN(len(next))]
		}
	}
	return narrowed, nil
}

// renumberSearched are the groups whose every state the clock checks
// visit, renumberWalked those they walk through at random (with every
// group above).
var (
	renumberSearched = []string{"lamport/peers=3/entries=1", "ricart-agrawala/peers=3/entries=1", "lamport/peers=2/entries=3",
		"lamport/peers=2/entries=2/withdrawals=1", "ricart-agrawala/peers=2/entries=2/withdrawals=1",
		"lamport/peers=2/entries=1/withdrawals=1/crashes=1", "lamport/peers=2/entries=1/crashes=2", "lamport/peers=2/entries=2/crashes=1"}
	renumberWalked = append([]string{"lamport/peers=3/entries=2", "ricart-agrawala/peers=3/entries=2", "lamport/peers=3/entries=1/withdrawals=1", "lamport/peers=3/entries=1/crashes=1",
		"lamport/peers=3/entries=1/crashes=2", "lamport/peers=2/entries=2/withdrawals=1/crashes=2"}, renumberSearched...)
)

// TestRenumberedStatesAgree checks what the clock renumbering rests on
// (see clockMap) at every state of small groups and on random walks
// through larger ones: the state renumbered as its key renumbers it has
// the same key, and every move takes both to states of one key, or fails
// a check in both. A rank compression (every gap 1) and a key that drops
// the gaps (every gap 0 that the sound key keeps) fail it.
func TestRenumberedStatesAgree(t *testing.T) {
	walks := 200
	searched := renumberSearched
	if testing.Short() || raceEnabled {
		walks, searched = 30, searched[2:5]
	}
	run := func(how, name string, walks int) {
		t.Run(how+"/"+name, func(t *testing.T) {
			narrowed, err := checkRenumberings(scenarioNamed(t, name), walks, gapBound)
			if err != nil {
				t.Fatal(err)
			}
			if narrowed == 0 {
				t.Fatal("no state had a gap narrowed: nothing checked")
			}
			t.Logf("%d states with a gap narrowed", narrowed)
		})
	}
	for _, name := range searched {
		run("every-state", name, 0)
	}
	for _, name := range renumberWalked {
		run("walks", name, walks)
	}
	for _, broken := range []struct {
		name string
		gap  uint64
	}{{"rank-compression", 1}, {"gaps-dropped", 0}} {
		t.Run(broken.name, func(t *testing.T) {
			_, err := checkRenumberings(scenarioNamed(t, "lamport/peers=3/entries=1"), walks, func(*world) uint64 { return broken.gap })
			if err == nil {
				t.Fatal("an unsound renumbering passed")
			}
			t.Logf("caught: %s", strings.SplitN(err.Error(), "\n", 2)[0])
		})
	}
}

// increments returns how much mv, which took w to t, added to clocks: the
// +1 of the receive rule and the ticks of the Machine that moved.
func increments(w *world, mv move, t *world) int {
	p := mv.from
	base := w.c.ms[p].clock
	if mv.kind == mvDeliver || mv.kind == mvDrop {
		p = mv.to
		base = w.c.ms[p].clock
		msg := w.c.links[mv.from][mv.to][mv.i].msg
		if mv.kind == mvDeliver && msg.Kind != PeerUp && w.c.ms[p].Accepts(msg) == nil {
			base = max(base, msg.Clock)
		}
	}
	return int(t.c.ms[p].clock - base)
}

// checkTicksLeft walks sc's world at random and, at every state with no
// crash left, checks that every move lowers ticksLeft (with weights wt) by
// at least the increments it makes.
func checkTicksLeft(sc *scenario, walks int, wt tickWeights) (moves int, err error) {
	x := newExplorer(sc)
	start, err := x.newStart()
	if err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range walks {
		w := start
		for {
			var next []*world
			for _, mv := range allMoves(w, sc) {
				t, err := step(w, mv)
				if err != nil {
					continue
				}
				next = append(next, t)
				if w.crashes > 0 {
					continue
				}
				moves++
				before, after, inc := ticksLeft(w, wt), ticksLeft(t, wt), increments(w, mv, t)
				if inc < 0 || after < 0 || before-after < inc {
					return moves, fmt.Errorf("%s adds %d to clocks, and ticksLeft goes from %d to %d, at\n%s", w.describe(mv), inc, before, after, worldString(w))
				}
			}
			if len(next) == 0 {
				break
			}
			w = next[rng.IntN(len(next))]
		}
	}
	return moves, nil
}

// TestTicksLeftBoundsTheTicks checks on random walks what clockMap's
// argument takes of ticksLeft: every move lowers it by at least what the
// move adds to clocks, so it bounds what any path adds. Counting one tick
// too few for an entry, or for a REQUEST in flight, fails it.
func TestTicksLeftBoundsTheTicks(t *testing.T) {
	walks := 200
	if testing.Short() || raceEnabled {
		walks = 30
	}
	for _, name := range renumberWalked {
		t.Run(name, func(t *testing.T) {
			moves, err := checkTicksLeft(scenarioNamed(t, name), walks, tickWeights{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d moves checked", moves)
		})
	}
	for _, broken := range []tickWeights{{entryLess: 1}, {requestLess: 1}} {
		t.Run(fmt.Sprintf("broken-%+v", broken), func(t *testing.T) {
			if _, err := checkTicksLeft(scenarioNamed(t, "lamport/peers=3/entries=1"), walks, broken); err == nil {
				t.Fatal("a count of ticks too low passed")
			} else {
				t.Logf("caught: %s", strings.SplitN(err.Error(), "\n", 2)[0])
			}
		})
	}
}
