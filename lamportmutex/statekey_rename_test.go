package lamportmutex

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// renamed returns w with peer old renamed perm[old]: each Machine becomes
// the Machine of its new id, with its peers, queue, request and links
// renamed, and so do the budgets and the checker's memory. Ties between
// tokens of equal clocks are broken by the new ids, as the rules would
// break them, so that a renaming that swaps two peers whose tokens tie
// gives a world whose future is not the renamed future of w.
func renamed(w *world, perm []int) *world {
	d := w.clone()
	c, n := d.c, len(w.c.ids)
	ids := c.ids
	id := func(old string) string { return ids[perm[w.c.index(old)]] }
	c.shared = make([]bool, n)
	for o, m := range w.c.ms {
		r := m.Clone()
		r.self = perm[m.self]
		r.peers = make([]peer, n)
		for j, p := range m.peers {
			p.id = ids[perm[j]]
			r.peers[perm[j]] = p
		}
		r.q = nil
		for _, t := range m.q {
			r.q.put(Token{Clock: t.Clock, ID: id(t.ID)})
		}
		r.own.ID = ids[perm[o]]
		c.ms[perm[o]] = r
		c.inc[perm[o]] = w.c.inc[o]
		d.budget[perm[o]] = w.budget[o]
		d.k.held[perm[o]] = w.k.held[o]
		for t := range n {
			if t == o {
				continue
			}
			l := make([]envelope, len(w.c.links[o][t]))
			for i, e := range w.c.links[o][t] {
				e.msg.From, e.msg.To = id(e.msg.From), id(e.msg.To)
				l[i] = e
			}
			c.links[perm[o]][perm[t]] = l
		}
	}
	if d.k.haveMax {
		d.k.maxTok.ID = id(w.k.maxTok.ID)
	}
	return d
}

// successorKeys returns the keys of the states one move (crashes
// included) after w, and for each move that fails a check, its error.
func successorKeys(w *world, sc *scenario, keys *stateKeyer) (map[[2]uint64]bool, []string, []*world) {
	mvs := allMoves(w, sc)
	out := make(map[[2]uint64]bool)
	var errs []string
	var next []*world
	for _, mv := range mvs {
		t := w.clone()
		err := t.apply(mv)
		if err == nil {
			err = t.k.check(t.c)
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		h1, h2 := keys.hashes(t)
		out[[2]uint64{h1, h2}] = true
		next = append(next, t)
	}
	slices.Sort(errs)
	return out, errs, next
}

// checkRenamings walks sc's world at random and, at every state, for
// every renaming allowed says is allowed: the renamed state has the key of
// the state (so the key names the class), and the keys of the states one
// move after it are those after the state, and the same moves fail the
// same checks (so the renamed state has the state's future, renamed, as
// far as the key can tell). It returns the first disagreement.
func checkRenamings(sc *scenario, walks int, allowed func(k *stateKeyer, perm []int) bool) (swaps int, err error) {
	x := newExplorer(sc)
	start, err := x.newStart()
	if err != nil {
		return 0, err
	}
	keys := newStateKeyer(len(start.c.ids), true, sc.algos[0])
	rng := rand.New(rand.NewPCG(1, 2))
	for range walks {
		w := start
		for {
			keys.markKept(w)
			h1, h2 := keys.hashes(w)
			after, errs, next := successorKeys(w, sc, keys)
			for _, perm := range keys.perms {
				keys.markKept(w)
				if !allowed(keys, perm) || slices.IsSorted(perm) {
					continue
				}
				swaps++
				r := renamed(w, perm)
				g1, g2 := keys.hashes(r)
				if g1 != h1 || g2 != h2 {
					return swaps, fmt.Errorf("renaming %v changes the key of\n%s", perm, worldString(w))
				}
				rafter, rerrs, _ := successorKeys(r, sc, keys)
				if len(rafter) != len(after) || !slices.Equal(errs, rerrs) {
					return swaps, fmt.Errorf("renaming %v changes the moves after\n%s", perm, worldString(w))
				}
				for h := range after {
					if !rafter[h] {
						return swaps, fmt.Errorf("renaming %v changes the states after\n%s", perm, worldString(w))
					}
				}
			}
			if len(next) == 0 {
				break
			}
			w = next[rng.IntN(len(next))]
		}
	}
	return swaps, nil
}

// worldString lists w's Machines and links, for failures.
func worldString(w *world) string {
	s := ""
	for _, m := range w.c.ms {
		s += "  " + machineString(m) + "\n"
	}
	for f := range w.c.ids {
		for t := range w.c.ids {
			if len(w.c.links[f][t]) > 0 {
				s += "  " + w.c.linkString(f, t) + "\n"
			}
		}
	}
	return s
}

// TestRenamedStatesAgree checks what the symmetry reduction rests on (see
// stateKeyer) on random walks through small groups: at every state, every
// renaming the keyer allows keeps the key and the states one move on. A
// keyer that allowed every renaming, ties or not, fails it.
func TestRenamedStatesAgree(t *testing.T) {
	walks := 300
	if testing.Short() || raceEnabled {
		walks = 40
	}
	for _, name := range []string{"lamport/peers=3/entries=1", "ricart-agrawala/peers=3/entries=1", "lamport/peers=2/entries=3",
		"lamport/peers=2/entries=2/withdrawals=1", "ricart-agrawala/peers=2/entries=2/withdrawals=1", "lamport/peers=2/entries=1/crashes=1", "lamport/peers=3/entries=1/withdrawals=1", "lamport/peers=3/entries=1/crashes=1"} {
		t.Run(name, func(t *testing.T) {
			sc := scenarioNamed(t, name)
			swaps, err := checkRenamings(sc, walks, (*stateKeyer).allowed)
			if err != nil {
				t.Fatal(err)
			}
			if swaps == 0 {
				t.Fatal("no renaming but the identity was allowed anywhere: nothing checked")
			}
			t.Logf("%d renamings checked", swaps)
		})
	}
	t.Run("every-renaming-allowed", func(t *testing.T) {
		sc := scenarioNamed(t, "lamport/peers=3/entries=1")
		_, err := checkRenamings(sc, walks, func(*stateKeyer, []int) bool { return true })
		if err == nil {
			t.Fatal("a keyer that allows every renaming passed")
		}
		t.Logf("caught: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	})
}
