package lamportmutex

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// explorer visits every state reachable from n freshly started Machines
// (every link carrying its first-contact PeerUp) in which each peer makes up
// to budget requests, and up to withdrawals of them are withdrawn while
// waiting. States are deduplicated by a canonical encoding of every
// Machine's fields, every link's queue, the budgets and the checker's
// memory. Every state is checked; a state with no move left must have no
// request outstanding (no deadlock, every request granted).
type explorer struct {
	n           int
	budget      int  // requests per peer
	withdrawals int  // withdrawals in all
	broken      bool // fault: Machines ignore the latest rule
	reorder     bool // fault: links deliver any queued message
	limit       int  // stop with errStateLimit after this many states (0: none)
	booted      bool // start after first contact: every PeerUp and its REPLY delivered, in a fixed order
	ra          bool // the Machines run Ricart-Agrawala

	seen  map[[16]byte]struct{} // 128-bit hashes of canonical state encodings
	path  []move                // moves from the initial state to the current one
	terms int                   // terminal states
	hash  *stateHasher
}

var errStateLimit = errors.New("state limit reached")

// xstate is one global state.
type xstate struct {
	c       *cluster
	k       *checker
	budget  []int
	withdr  int
	entries int
}

// move is one transition.
type move struct {
	kind     byte // 'd' deliver, 'r' request, 'l' release, 'w' withdraw
	from, to int  // deliver: link; others: from is the peer
	i        int  // deliver: position in the link
}

func (x *explorer) run() error {
	c, err := newCluster(peerIDs(x.n), x.broken, false, simConfig{ra: x.ra}.options()...)
	if err != nil {
		return err
	}
	if x.booted {
		if err := boot(c); err != nil {
			return err
		}
	}
	s := &xstate{c: c, k: newChecker(x.n), budget: make([]int, x.n), withdr: x.withdrawals}
	for i := range s.budget {
		s.budget[i] = x.budget
	}
	x.seen = make(map[[16]byte]struct{})
	x.hash = newStateHasher()
	return x.dfs(s)
}

func (x *explorer) dfs(s *xstate) error {
	key := x.key(s)
	if _, ok := x.seen[key]; ok {
		return nil
	}
	x.seen[key] = struct{}{}
	if x.limit > 0 && len(x.seen) > x.limit {
		return errStateLimit
	}
	moves := x.moves(s)
	if len(moves) == 0 {
		x.terms++
		for _, m := range s.c.ms {
			if outstanding(m) {
				return x.fail(fmt.Errorf("deadlock: no move left but %s", machineString(m)), s)
			}
		}
		return nil
	}
	for _, mv := range moves {
		t := &xstate{c: s.c.clone(), k: s.k.clone(), budget: append([]int(nil), s.budget...), withdr: s.withdr, entries: s.entries}
		x.path = append(x.path, mv)
		err := t.apply(mv)
		if err == nil {
			err = t.k.check(t.c)
		}
		if err != nil {
			return x.fail(err, t)
		}
		if err := x.dfs(t); err != nil {
			return err
		}
		x.path = x.path[:len(x.path)-1]
	}
	return nil
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

func (x *explorer) fail(err error, s *xstate) error {
	var b strings.Builder
	for _, m := range s.c.ms {
		b.WriteString("  " + machineString(m) + "\n")
	}
	for f := range s.c.ids {
		for t := range s.c.ids {
			if len(s.c.links[f][t]) > 0 {
				b.WriteString("  " + s.c.linkString(f, t) + "\n")
			}
		}
	}
	return &exploreError{err: err, trace: x.describePath(), state: b.String()}
}

// describePath replays the current path from the initial state to name
// every move.
func (x *explorer) describePath() []string {
	c, err := newCluster(peerIDs(x.n), x.broken, false, simConfig{ra: x.ra}.options()...)
	if err != nil {
		return []string{err.Error()}
	}
	if x.booted {
		if err := boot(c); err != nil {
			return []string{err.Error()}
		}
	}
	s := &xstate{c: c, k: newChecker(x.n), budget: make([]int, x.n)}
	out := []string{"(booted: every PeerUp and its REPLY delivered)"}
	for _, mv := range x.path {
		out = append(out, s.describe(mv))
		_ = s.apply(mv)
	}
	return out
}

func (x *explorer) moves(s *xstate) []move {
	var out []move
	c := s.c
	for f := range c.ids {
		for t := range c.ids {
			l := len(c.links[f][t])
			if l == 0 {
				continue
			}
			last := 0
			if x.reorder {
				last = l - 1
			}
			for i := 0; i <= last; i++ {
				out = append(out, move{kind: 'd', from: f, to: t, i: i})
			}
		}
	}
	for p, m := range c.ms {
		switch {
		case m.Held():
			out = append(out, move{kind: 'l', from: p})
		case m.Requesting():
			if s.withdr > 0 {
				out = append(out, move{kind: 'w', from: p})
			}
		case s.budget[p] > 0:
			out = append(out, move{kind: 'r', from: p})
		}
	}
	return out
}

func (s *xstate) describe(mv move) string {
	c := s.c
	switch mv.kind {
	case 'd':
		e := c.links[mv.from][mv.to][mv.i]
		if mv.i > 0 {
			return fmt.Sprintf("deliver %v (position %d: out of order)", e.msg, mv.i)
		}
		return fmt.Sprintf("deliver %v", e.msg)
	case 'r':
		return "request " + c.ids[mv.from]
	case 'l':
		return "release " + c.ids[mv.from]
	default:
		return "withdraw " + c.ids[mv.from]
	}
}

func (s *xstate) apply(mv move) error {
	switch mv.kind {
	case 'd':
		return s.c.deliver(mv.from, mv.to, mv.i)
	case 'r':
		s.budget[mv.from]--
		return s.c.request(mv.from)
	case 'l':
		s.entries++
		return s.c.release(mv.from, fmt.Appendf(nil, "e%d", s.entries))
	default:
		s.withdr--
		return s.c.release(mv.from, nil)
	}
}

func (x *explorer) key(s *xstate) [16]byte {
	return x.hash.key(s.c, s.k, append(slices.Clone(s.budget), s.withdr, s.entries)...)
}

// TestExplore explores every interleaving of small configurations. Two
// peers start from first contact (every link carrying its PeerUp), so
// requests race the handshake; three peers start once first contact is
// over. The three-peer runs are skipped with -short and, under -race,
// unless LAMPORT_EXPLORE_BIG=1; LAMPORT_EXPLORE_BIG=1 also adds the largest.
func TestExplore(t *testing.T) {
	type config struct {
		n, budget, withdrawals int
		booted                 bool
		heavy, big             bool
		ra                     bool
	}
	configs := []config{
		{n: 2, budget: 1},
		{n: 2, budget: 2},
		{n: 2, budget: 3},
		{n: 2, budget: 2, withdrawals: 1},
		{n: 3, budget: 1, booted: true, heavy: true},
		{n: 3, budget: 1, withdrawals: 1, booted: true, big: true},
		{n: 3, budget: 2, booted: true, big: true},
		{n: 2, budget: 2, ra: true},
		{n: 2, budget: 3, ra: true},
		{n: 2, budget: 2, withdrawals: 1, ra: true},
		{n: 3, budget: 1, booted: true, heavy: true, ra: true},
	}
	big := os.Getenv("LAMPORT_EXPLORE_BIG") != ""
	for _, cf := range configs {
		name := fmt.Sprintf("peers=%d/entries=%d/withdrawals=%d/booted=%v", cf.n, cf.budget, cf.withdrawals, cf.booted)
		if cf.ra {
			name = "ricart-agrawala/" + name
		}
		t.Run(name, func(t *testing.T) {
			switch {
			case cf.big && !big:
				t.Skip("large: set LAMPORT_EXPLORE_BIG=1")
			case cf.heavy && !big && (testing.Short() || raceEnabled):
				t.Skip("slow under -short or -race: set LAMPORT_EXPLORE_BIG=1")
			}
			start := time.Now()
			x := &explorer{n: cf.n, budget: cf.budget, withdrawals: cf.withdrawals, booted: cf.booted, ra: cf.ra}
			if err := x.run(); err != nil {
				t.Fatalf("after %d states: %v", len(x.seen), err)
			}
			t.Logf("%s: %d distinct states, %d terminal, in %v", name, len(x.seen), x.terms, time.Since(start).Round(time.Millisecond))
		})
	}
}
