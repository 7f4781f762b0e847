package lamportmutex

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"slices"
)

// stateKeyer names an explorer's state by a binary encoding, which it
// hashes for the visited set (visitedSet says how likely two states are
// taken for one). The encoding holds what the future of the state depends
// on, and nothing else:
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
//   - Clocks are renumbered (clockMap): their gaps are encoded only as
//     wide as some path from the state can tell apart, and a REPLY or
//     RELEASE in flight that cannot raise its receiver's clock only as
//     whether it is later than the receiver's stamp.
//
// With symmetry on, the key is the least encoding over the renamings of
// peers that keep every comparison the rules can still make: peers are
// interchangeable, except that the rules break ties between requests of
// equal clocks by id, so a renaming that swaps the order of two peers whose
// tokens may yet tie gives a state whose future differs (the other peer
// wins the tie). A peer's id is compared only through its tokens: requests
// in queues and in flight, its own request, and, in the checker, the
// greatest grant. Two peers' tokens may yet tie only if both may still
// stamp a request, or one may and the other has a token that request may
// reach, or they have tokens at one clock now (markKept, which keeps more
// under Ricart-Agrawala and while a crash is left); a renaming is allowed
// when it keeps the order of every such pair, and may swap the others.
// Renaming a state by an allowed renaming gives a state with the same
// future up to that renaming: the rules and the checker depend on ids only
// through those comparisons, which come out alike, and through the order
// in which a Machine addresses its peers, which orders messages on
// different links and, for the REPLYs a Ricart-Agrawala release sends,
// their clocks (see markKept); and every check is invariant under
// renaming. Which pairs are kept is itself renamed with the state, so the
// allowed renamings of a renamed state are those of the state composed
// with the renaming, and the least encoding over them is the same for
// both: the key names the class. TestRenamedStatesAgree checks both claims
// on the states of random walks through small groups.
type stateKeyer struct {
	buf      []byte // the encoding being made
	best     []byte // the least encoding so far
	h1, h2   maphash.Seed
	perms    [][]int // every permutation of the peers: perm[old] = new
	symmetry bool
	inOrder  bool // the rules tick the clock between messages to peers in id order (Ricart-Agrawala)
	inv      []int
	future   []bool     // per peer: it may stamp another request
	tokens   []bool     // per peer: it has a token (see markKept)
	clocks   [][]uint64 // per peer: its tokens' clocks
	kept     []bool     // kept[a*n+b], a < b: the pair's order is kept
	renumber clockMap   // how the state's clocks are encoded
	seen     []clockSeen
	// gapMax returns the widest a gap between two consecutive clocks of w
	// is encoded (see clockMap): gapBound, but for the unsound ones that
	// TestRenumberedStatesAgree must catch.
	gapMax func(w *world) uint64
}

func newStateKeyer(n int, symmetry bool, algo Algorithm) *stateKeyer {
	k := &stateKeyer{h1: maphash.MakeSeed(), h2: maphash.MakeSeed(), symmetry: symmetry, inOrder: algo == RicartAgrawala, gapMax: gapBound}
	k.alloc(n)
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

// fork returns a keyer that hashes as k does, with buffers of its own,
// for another goroutine.
func (k *stateKeyer) fork() *stateKeyer {
	d := &stateKeyer{h1: k.h1, h2: k.h2, perms: k.perms, symmetry: k.symmetry, inOrder: k.inOrder, gapMax: k.gapMax}
	d.alloc(len(k.inv))
	return d
}

// alloc makes the per-peer buffers for n peers.
func (k *stateKeyer) alloc(n int) {
	k.inv, k.future, k.tokens = make([]int, n), make([]bool, n), make([]bool, n)
	k.clocks, k.kept = make([][]uint64, n), make([]bool, n*n)
}

// hashes returns two independently seeded 64-bit hashes of the key of w's
// state: its least encoding, byte-wise, over the allowed renamings.
func (k *stateKeyer) hashes(w *world) (h1, h2 uint64) {
	k.markKept(w)
	k.setClocks(w)
	first := true
	for _, perm := range k.perms {
		if !k.allowed(perm) {
			continue
		}
		for old, nw := range perm {
			k.inv[nw] = old
		}
		k.buf = k.encode(k.buf[:0], w, perm)
		if first || bytes.Compare(k.buf, k.best) < 0 {
			k.buf, k.best = k.best, k.buf
			first = false
		}
	}
	return maphash.Bytes(k.h1, k.best), maphash.Bytes(k.h2, k.best)
}

// markKept marks the pairs of peers whose order a renaming must keep:
// those whose tokens the rules or the checker may yet compare with equal
// clocks, where the tie is broken by id. A peer's tokens are its own
// stamped request, its requests queued anywhere or in flight, and the
// checker's greatest grant; a REPLY held back for it (Ricart-Agrawala)
// counts as a token of unknown clock. A peer that may still stamp a
// request (requests left in its budget, or one held back until synced)
// stamps it after its clock. So a pair's order is kept when both may stamp
// another request, or one may and the other has a token later than its
// clock (reaches), or both have a token at one clock (a tie). The rest
// never tie: each of their tokens that can ever be compared exists
// already, at a clock the other's lack, and none is made again (a resent
// request keeps its stamp). The order of a pair is also kept unless one of
// them has neither a token nor a request left, while a crash is left (a
// new incarnation starts its clock at 0), and under Ricart-Agrawala
// (inOrder): a release sends the REPLYs held back in id order, ticking the
// clock before each, so the order of two peers whose requests a Machine
// may hold back at once decides which gets the later clock.
//
// Along every move, a pair's order that is not kept stays so: budgets and
// crashes left only shrink, clocks only grow, a peer that stamps no more
// makes no token, and tokens only go.
func (k *stateKeyer) markKept(w *world) {
	c := w.c
	n := len(c.ids)
	for p, m := range c.ms {
		k.future[p] = w.budget[p] != 0 || m.state == pending
		k.tokens[p] = false
		k.clocks[p] = k.clocks[p][:0]
	}
	tok := func(p int, clock uint64) {
		k.tokens[p] = true
		k.clocks[p] = append(k.clocks[p], clock)
	}
	for p, m := range c.ms {
		if m.state.stamped() {
			tok(p, m.own.Clock)
		}
		for _, t := range m.q {
			tok(c.index(t.ID), t.Clock)
		}
		for j, pr := range m.peers {
			k.tokens[j] = k.tokens[j] || pr.deferred
		}
		for q := range c.ids {
			for _, e := range c.links[p][q] {
				if e.msg.Kind == Request {
					tok(p, e.msg.Clock)
				}
			}
		}
	}
	if w.k.haveMax {
		tok(c.index(w.k.maxTok.ID), w.k.maxTok.Clock)
	}
	for a := range n {
		for b := a + 1; b < n; b++ {
			var kept bool
			if w.crashes > 0 || k.inOrder {
				kept = (k.future[a] || k.tokens[a]) && (k.future[b] || k.tokens[b])
			} else {
				kept = k.future[a] && k.future[b] || k.future[a] && k.reaches(w, b, a) || k.future[b] && k.reaches(w, a, b)
				for _, x := range k.clocks[a] {
					kept = kept || slices.Contains(k.clocks[b], x)
				}
			}
			k.kept[a*n+b] = kept
		}
	}
}

// reaches reports whether peer b has a token that a request peer a stamps
// from now on may tie with: one of unknown clock, or one later than a's
// clock (a stamps its requests after its clock, which only grows, once no
// crash is left to start it again at 0).
func (k *stateKeyer) reaches(w *world, b, a int) bool {
	if !k.tokens[b] {
		return false
	}
	if w.crashes > 0 || len(k.clocks[b]) == 0 {
		return true
	}
	return slices.Max(k.clocks[b]) > w.c.ms[a].clock
}

// allowed reports whether perm keeps the order of every pair markKept
// marked.
func (k *stateKeyer) allowed(perm []int) bool {
	n := len(perm)
	for a := range n {
		for b := a + 1; b < n; b++ {
			if k.kept[a*n+b] && perm[a] > perm[b] {
				return false
			}
		}
	}
	return true
}

// encode appends to b w's state with peer old renamed perm[old], peers in
// their new order (k.inv[new] = old). Every field has a fixed width or a
// length before it, so no two states share an encoding.
func (k *stateKeyer) encode(b []byte, w *world, perm []int) []byte {
	c := w.c
	e := stateEncoder{b: b, clocks: &k.renumber}
	rename := func(id string) byte { return byte(perm[c.index(id)]) }
	for _, o := range k.inv {
		m := c.ms[o]
		e.u32(uint64(c.inc[o]))
		e.clock(m.clock)
		stamped := m.state.stamped()
		e.u8(byte(m.state))
		e.flags(w.k.held[o], false, false, false, false)
		e.u8(byte(w.budget[o] + 1))
		if stamped {
			e.clock(m.own.Clock)
		}
		e.u8(byte(len(m.q)))
		for _, t := range m.q {
			e.clock(t.Clock)
			e.u8(rename(t.ID))
		}
		for _, j := range k.inv {
			if j == o {
				continue
			}
			p := &m.peers[j]
			later := stamped && p.latest > m.own.Clock
			e.flags(later, p.heard, p.up, stamped && p.replied, p.deferred)
			e.u32(p.inc)
		}
	}
	for _, f := range k.inv {
		for _, t := range k.inv {
			if f == t {
				continue
			}
			l := c.links[f][t]
			e.u32(uint64(len(l)))
			for i := range l {
				msg := &l[i].msg
				e.u8(byte(msg.Kind))
				switch to := c.ms[t]; {
				case msg.Kind == PeerUp:
					e.u64(0)
				case k.renumber.dominated(msg, to.clock):
					// Only whether it is later than the receiver's stamp.
					var later uint64
					if to.state.stamped() && msg.Clock > to.own.Clock {
						later = 1
					}
					e.u64(1<<62 | later)
				default:
					e.clock(msg.Clock)
				}
				e.u32(msg.Incarnation)
				e.u32(uint64(l[i].destInc))
				e.flags(msg.Payload != nil, false, false, false, false)
			}
		}
	}
	e.u8(byte(w.withdrawals + 1))
	e.u8(byte(w.crashes + 1))
	e.flags(w.k.haveMax, false, false, false, false)
	if w.k.haveMax {
		e.clock(w.k.maxTok.Clock)
		e.u8(rename(w.k.maxTok.ID))
	}
	return e.b
}

// stateEncoder appends fixed-width fields, clocks renumbered.
type stateEncoder struct {
	b      []byte
	clocks *clockMap
}

func (e *stateEncoder) u8(v byte)      { e.b = append(e.b, v) }
func (e *stateEncoder) u32(v uint64)   { e.b = binary.LittleEndian.AppendUint32(e.b, uint32(v)) }
func (e *stateEncoder) u64(v uint64)   { e.b = binary.LittleEndian.AppendUint64(e.b, v) }
func (e *stateEncoder) clock(v uint64) { e.u64(e.clocks.of(v)) }
func (e *stateEncoder) flags(f0, f1, f2, f3, f4 bool) {
	var v byte
	for i, f := range [...]bool{f0, f1, f2, f3, f4} {
		if f {
			v |= 1 << i
		}
	}
	e.b = append(e.b, v)
}
