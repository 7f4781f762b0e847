package lamportmutex

import (
	"encoding/binary"
	"hash/maphash"
)

// stateKeyer names an explorer's state by a 128-bit hash of a fixed-size
// binary encoding (two independently seeded maphashes: a collision among
// 10^9 states has probability below 10^-20). The encoding holds what the
// future of the state depends on, and nothing else:
//
//   - A payload's bytes are not encoded, only whether there is one: the
//     explorer's payloads are all alike, and neither the Machine nor the
//     checker reads them.
//   - While a Machine has no request stamped, its own token, the REPLYs
//     to it (Ricart-Agrawala) and its latest clocks from each peer are not
//     encoded: each is overwritten, or read, only once the next request is
//     stamped. And while one is stamped, of latest[j] only whether it is
//     later than the stamp is: latest[j] only grows, the stamp is fixed,
//     and rule 5 (answered) is the only reader, asking exactly that. (When
//     a request is stamped, latest[j] is at most the clock, which the stamp
//     passes, so nothing earlier matters either.)
//
// With symmetry on, the key is the least hash over the renamings of peers
// that keep every comparison the rules can still make: peers are
// interchangeable, except that the rules break ties between requests of
// equal clocks by id, so a renaming that swaps the order of two peers whose
// tokens may yet be compared gives a state whose future differs (the other
// peer wins the tie). A peer's id is compared only through its tokens:
// requests in queues and in flight, its own request, the REPLYs Ricart-
// Agrawala holds back for it, and, in the checker, the greatest grant. A
// peer that has none of those and no requests left in its budget never
// will again (only a Request makes a token). So a renaming is allowed when
// it keeps the order among the peers that still have a token or a request
// left (the active ones), and may put the others anywhere. Renaming a state
// by an allowed renaming gives a state with the same future up to that
// renaming (the rules and the checker depend on ids only through those
// comparisons, and through the order in which a Machine addresses its
// peers, which matters only for the REPLYs Ricart-Agrawala releases in id
// order, to peers that are active), and every check is invariant under
// renaming. The allowed renamings of a renamed state are those of the state
// composed with the renaming, so the least hash over them is the same for
// both: the key names the class.
type stateKeyer struct {
	buf      []byte
	h1, h2   maphash.Seed
	perms    [][]int // every permutation of the peers: perm[old] = new
	symmetry bool
	inv      []int
	active   []bool
	base     uint64 // subtracted from every clock (see setBase)
}

func newStateKeyer(n int, symmetry bool) *stateKeyer {
	k := &stateKeyer{h1: maphash.MakeSeed(), h2: maphash.MakeSeed(), symmetry: symmetry, inv: make([]int, n), active: make([]bool, n)}
	var rec func(p []int, used []bool)
	rec = func(p []int, used []bool) {
		if len(p) == n {
			k.perms = append(k.perms, append([]int(nil), p...))
			return
		}
		for i := range n {
			if !used[i] {
				used[i] = true
				rec(append(p, i), used)
				used[i] = false
			}
		}
	}
	if symmetry {
		rec(nil, make([]bool, n))
	} else {
		id := make([]int, n)
		for i := range id {
			id[i] = i
		}
		k.perms = [][]int{id}
	}
	return k
}

// key returns the key of w's state.
func (k *stateKeyer) key(w *world) [16]byte {
	k.markActive(w)
	k.setBase(w)
	var best [16]byte
	first := true
	for _, perm := range k.perms {
		if !k.allowed(perm) {
			continue
		}
		for old, nw := range perm {
			k.inv[nw] = old
		}
		b := k.encode(w, perm)
		var key [16]byte
		binary.BigEndian.PutUint64(key[:8], maphash.Bytes(k.h1, b))
		binary.BigEndian.PutUint64(key[8:], maphash.Bytes(k.h2, b))
		if first || string(key[:]) < string(best[:]) {
			best, first = key, false
		}
	}
	return best
}

// markActive marks the peers whose ids the rules may still compare.
func (k *stateKeyer) markActive(w *world) {
	c := w.c
	for p, m := range c.ms {
		k.active[p] = w.budget[p] != 0 || outstanding(m)
		for q := range c.ids {
			for _, e := range c.links[p][q] {
				k.active[p] = k.active[p] || e.msg.Kind == Request
			}
		}
	}
	for _, m := range c.ms {
		for _, t := range m.q {
			k.active[c.index(t.ID)] = true
		}
		for j, p := range m.peers {
			k.active[j] = k.active[j] || p.deferred
		}
	}
	if w.k.haveMax {
		k.active[c.index(w.k.maxTok.ID)] = true
	}
}

// setBase sets the clock subtracted from every clock in the encoding: the
// least clock in the state, once no crash is left, else 0 (and always 0
// without the reductions). The rules use
// clocks only through comparisons, differences (MaxClockStep), max and
// adding one, which all commute with adding a constant to every clock;
// latest[j] is encoded only as its comparison with the request's stamp,
// so its 0 after a PEERUP needs no shifting; and MaxClock is far above any
// clock the explorer reaches. What does not commute is a restart: a new
// incarnation starts at clock 0 whatever the others' clocks are, so while
// a crash is left, clocks are encoded as they are. A PEERUP's clock is
// never read.
func (k *stateKeyer) setBase(w *world) {
	k.base = 0
	if w.crashes > 0 || !k.symmetry {
		return
	}
	c := w.c
	lo := uint64(1<<64 - 1)
	see := func(v uint64) { lo = min(lo, v) }
	for _, m := range c.ms {
		see(m.clock)
		if m.state.stamped() {
			see(m.own.Clock)
		}
		for _, t := range m.q {
			see(t.Clock)
		}
	}
	for _, row := range c.links {
		for _, l := range row {
			for _, e := range l {
				if e.msg.Kind != PeerUp {
					see(e.msg.Clock)
				}
			}
		}
	}
	if w.k.haveMax {
		see(w.k.maxTok.Clock)
	}
	if lo > MaxClock/2 {
		panic("explorer: clocks near MaxClock")
	}
	k.base = lo
}

// allowed reports whether perm keeps the order among the active peers.
func (k *stateKeyer) allowed(perm []int) bool {
	last := -1
	for p, a := range k.active {
		if a {
			if perm[p] < last {
				return false
			}
			last = perm[p]
		}
	}
	return true
}

// encode writes w's state with peer old renamed perm[old], peers in their
// new order (k.inv[new] = old).
func (k *stateKeyer) encode(w *world, perm []int) []byte {
	c := w.c
	b := k.buf[:0]
	u8 := func(v int) { b = append(b, byte(v)) }
	u32 := func(v uint64) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	flags := func(fs ...bool) {
		var v byte
		for i, f := range fs {
			if f {
				v |= 1 << i
			}
		}
		b = append(b, v)
	}
	rename := func(id string) int { return perm[c.index(id)] }
	base := k.base
	clock := func(v uint64) { u64(v - base) }
	for _, o := range k.inv {
		m := c.ms[o]
		u32(uint64(c.inc[o]))
		clock(m.clock)
		stamped := m.state.stamped()
		u8(int(m.state))
		flags(w.k.held[o])
		u8(w.budget[o] + 1)
		if stamped {
			clock(m.own.Clock)
		}
		u8(len(m.q))
		for _, t := range m.q {
			clock(t.Clock)
			u8(rename(t.ID))
		}
		for _, j := range k.inv {
			if j == o {
				continue
			}
			p := m.peers[j]
			later := stamped && p.latest > m.own.Clock
			flags(later, p.heard, p.up, stamped && p.replied, p.deferred)
			u32(p.inc)
		}
	}
	for _, f := range k.inv {
		for _, t := range k.inv {
			if f == t {
				continue
			}
			l := c.links[f][t]
			u32(uint64(len(l)))
			for _, e := range l {
				u8(int(e.msg.Kind))
				if e.msg.Kind == PeerUp {
					u64(0)
				} else {
					clock(e.msg.Clock)
				}
				u32(e.msg.Incarnation)
				u32(uint64(e.destInc))
				flags(e.msg.Payload != nil)
			}
		}
	}
	u8(w.withdrawals + 1)
	u8(w.crashes + 1)
	flags(w.k.haveMax)
	if w.k.haveMax {
		clock(w.k.maxTok.Clock)
		u8(rename(w.k.maxTok.ID))
	}
	k.buf = b
	return b
}
