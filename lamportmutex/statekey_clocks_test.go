package lamportmutex

import (
	"cmp"
	"slices"
)

// clockMap is how a stateKeyer encodes the clocks of one state w. While a
// crash is left, or without the reductions, it keeps them as they are (a
// restarted Machine starts its clock at 0, whatever the others'). Else it
// renumbers them: the least becomes 0, and each gap between two
// consecutive distinct clocks v < u is encoded as
//
//   - 1 if no source is at or below v (see clockSeen: a source is a clock
//     a Machine's clock may yet take the maximum with, a fixed one is a
//     token's, never changed and only ever compared);
//   - once no request can be stamped any more (no budget left, none held
//     back): 0 above the greatest fixed clock, and 1 from it;
//   - else at most g = ticksLeft(w)+1.
//
// And a REPLY or RELEASE in flight whose clock is dominated (see
// clockMap.dominated) is left out of the renumbering: the key holds only
// whether it is later than its receiver's stamp. A clock at most the
// receiver's is never taken by the receive rule's maximum (the receiver's
// clock only grows), and the entry rule (and stalledBy) compare it only
// with the receiver's stamp, now, or a later one, which is after the
// receiver's clock and so after it. Once no stamp is to come, a clock
// above every fixed one, delivered to a Machine whose clock is too, leaves
// it above every fixed one, and is later than the stamp.
//
// Why this is sound (a state and its image have the same future, up to
// renumbering):
//
//   - Nothing reads a clock but to compare it with another: Token.Less
//     (queues, the entry rule, the refusal of an earlier REQUEST, the
//     checker's grant order), the entry rule's latest[j] > stamp, the
//     explorer's stalledBy, and markKept's ties and reaches. New clocks
//     come only from a tick (+1), the receive rule (max(clock, msg)+1) and
//     a HELLO (max), on sources; a new fixed clock is a stamp, the clock of
//     a Machine that just ticked, or a source queued or granted. Other
//     readers never matter here: MaxClock and MaxClockStep, as every clock
//     of the explorer stays below 2^31 (setClocks panics otherwise) and
//     its image is no larger; latest[j], which the key holds only as its
//     comparison with the stamp (stateKeyer); cluster.send's check of a
//     session's clocks, which the explorer does not track. And a crash,
//     which resets a clock to 0, is left out above.
//   - So every clock that a path from w makes is v+d for a source v of w
//     and d at most the number of increments (ticks, and the +1 of the
//     receive rule) along the path, which is at most D = ticksLeft(w):
//     ticksLeft drops by at least a move's increments with every move
//     (TestTicksLeftBoundsTheTicks).
//   - Below the least source every clock is fixed, and is compared only
//     with fixed clocks, by order, or with clocks made from sources, which
//     are all greater: a gap of 1 keeps every such comparison.
//   - With no stamp to come, every comparison any path makes has a fixed
//     clock of w on one side (a stamp, a token, the greatest grant), and
//     every clock above the greatest fixed one is greater than all of
//     them, and stays so: it may take any value above it.
//   - Elsewhere, let f be the renumbering and φ(v+d) = f(v)+d for v a
//     clock of w and 0 ≤ d ≤ D. For clocks v < u of w and d, e in [0, D]:
//     if no gap between v and u was capped, f(u)-f(v) = u-v, and v+d
//     compares with u+e as f(v)+d with f(u)+e; if one was, u-v ≥ f(u)-f(v)
//     ≥ D+1 > d-e, so v+d < u+e and f(v)+d < f(u)+e. Hence φ keeps every
//     comparison (ties included) between the clocks any path from w can
//     make, and commutes with +1 and max.
//   - By induction along any path, the state it reaches from the image of
//     w is the image of the state it reaches from w (but for the clocks
//     above the greatest fixed one once no stamp is to come, which are
//     above it in both): the same moves are enabled, the same checks pass
//     or fail, the same Machines hold. (A plain rank compression, g = 1
//     everywhere, is not sound: max(clock, msg)+1 can land on a clock
//     above it in the image and below it in w.)
//   - And the two have one key, so the key names the class: a state and
//     its image do (renumbering again changes nothing, as ticksLeft, the
//     sources and the budgets read no clock), and so do their successors
//     s and φ(s). After U increments, D(s) ≤ D-U; two consecutive clocks
//     of s made across a capped gap differ by at least D+1-U ≥ D(s)+1 in
//     φ(s), and by at least as much in s, so both gaps are capped alike;
//     every other gap is the same in both, or below the least source, or
//     above the greatest fixed clock, in both.
//
// TestRenumberedStatesAgree checks both claims at every state of small
// groups and on random walks through larger ones, and that it catches a
// rank compression and a key that drops the gaps.
type clockMap struct {
	identity bool
	from, to []uint64 // from sorted, distinct; to[i] encodes from[i]
	stamps   bool     // a request may yet be stamped
	fixed    bool     // the state has a fixed clock
	top      uint64   // its greatest fixed clock, if fixed
}

// above reports whether clock v is one that, with no stamp to come, is
// above every fixed clock.
func (c *clockMap) above(v uint64) bool { return !c.stamps && (!c.fixed || v > c.top) }

// dominated reports whether msg, in flight to a Machine whose clock is
// clock, is a REPLY or a RELEASE whose clock matters only as its
// comparison with the receiver's stamp (see clockMap), which the key
// holds instead: its clock is at most the receiver's, which only grows,
// so that the receive rule's maximum never takes it; or both are above
// every fixed clock with no stamp to come.
func (c *clockMap) dominated(msg *Message, clock uint64) bool {
	if c.identity || msg.Kind != Reply && msg.Kind != Release {
		return false
	}
	return msg.Clock <= clock || c.above(msg.Clock) && c.above(clock)
}

// of returns the encoding of clock v, which must be one of the state's.
func (c *clockMap) of(v uint64) uint64 {
	if c.identity {
		return v
	}
	i, ok := slices.BinarySearch(c.from, v)
	if !ok {
		panic("explorer: a clock the key did not collect")
	}
	return c.to[i]
}

// setClocks sets k.renumber for w: every clock the encoding holds,
// renumbered with the gaps of clockMap; or, while a crash is left or
// without the reductions, as they are.
func (k *stateKeyer) setClocks(w *world) {
	r := &k.renumber
	r.identity = w.crashes != 0 || !k.symmetry
	if r.identity {
		return
	}
	r.stamps = false
	for p, m := range w.c.ms {
		r.stamps = r.stamps || w.budget[p] != 0 || m.state == pending
	}
	k.seen = appendClocks(k.seen[:0], w, nil)
	r.top, r.fixed = 0, false
	for _, s := range k.seen {
		if s.fixed {
			r.top, r.fixed = max(r.top, s.v), true
		}
	}
	k.seen = appendClocks(k.seen[:0], w, r)
	slices.SortFunc(k.seen, func(a, b clockSeen) int { return cmp.Compare(a.v, b.v) })
	if k.seen[len(k.seen)-1].v >= 1<<31 {
		panic("explorer: clocks near MaxClockStep")
	}
	stamps, top, fixed := r.stamps, r.top, r.fixed
	gap := k.gapMax(w)
	r.from, r.to = r.from[:0], r.to[:0]
	below := false // a source at or below the last clock
	for _, s := range k.seen {
		if n := len(r.from); n > 0 && r.from[n-1] == s.v {
			below = below || s.source
			continue
		}
		var to uint64
		if n := len(r.from); n > 0 {
			last := r.from[n-1]
			d := s.v - last
			switch {
			case !below:
				d = 1
			case !stamps && (!fixed || last > top):
				d = 0
			case !stamps && last == top:
				d = 1
			default:
				d = min(d, gap)
			}
			to = r.to[n-1] + d
		}
		r.from, r.to = append(r.from, s.v), append(r.to, to)
		below = below || s.source
	}
}

// clockSeen is a clock of a state, and what it is: a source, which a
// Machine's clock may yet take the maximum with (a Machine's clock, a
// clock in flight, a stamp its Machine will resend after a PEERUP), and
// fixed, the clock of a token (a stamp, a queued token, a REQUEST in
// flight, the checker's greatest grant), which never changes and is
// compared with others. A clock of a REQUEST in flight is both while it
// is above its receiver's clock, and fixed after.
type clockSeen struct {
	v             uint64
	source, fixed bool
}

// appendClocks appends every clock of w that stateKeyer.encode holds:
// all but those r finds dominated (all, if r is nil).
func appendClocks(out []clockSeen, w *world, r *clockMap) []clockSeen {
	c := w.c
	for p, m := range c.ms {
		out = append(out, clockSeen{m.clock, true, false})
		if m.state.stamped() {
			// A PEERUP makes the Machine resend its request, stamp and
			// all, which its receiver takes the maximum with.
			out = append(out, clockSeen{m.own.Clock, peerUpTo(c, p), true})
		}
		for _, t := range m.q {
			out = append(out, clockSeen{t.Clock, false, true})
		}
	}
	for _, row := range c.links {
		for to, l := range row {
			for i := range l {
				msg := &l[i].msg
				if msg.Kind != PeerUp && (r == nil || !r.dominated(msg, c.ms[to].clock)) {
					// A REQUEST is a token; a source only while it may
					// still raise its receiver's clock.
					source := msg.Kind != Request || msg.Clock > c.ms[to].clock
					out = append(out, clockSeen{msg.Clock, source, msg.Kind == Request})
				}
			}
		}
	}
	if w.k.haveMax {
		out = append(out, clockSeen{w.k.maxTok.Clock, false, true})
	}
	return out
}

// peerUpTo reports whether a PEERUP is in flight to peer p.
func peerUpTo(c *cluster, p int) bool {
	for q := range c.links {
		for _, e := range c.links[q][p] {
			if e.msg.Kind == PeerUp {
				return true
			}
		}
	}
	return false
}

// gapBound is the widest gap between consecutive clocks that the key
// needs to tell apart: one more than any path from w can add to a clock.
func gapBound(w *world) uint64 { return uint64(ticksLeft(w, tickWeights{})) + 1 }

// tickWeights are the increments that ticksLeft counts for what is left.
// The zero value is the real count; the tests break it on purpose.
type tickWeights struct{ entryLess, requestLess int }

// ticksLeft bounds the increments of clocks (ticks, and the +1 of the
// receive rule) along every path from w, which must have no crash left,
// in a group of n; and with every move it drops by at least the move's
// increments (TestTicksLeftBoundsTheTicks). It counts, under either
// algorithm:
//
//   - A REQUEST in flight, or a PEERUP (to which a stamped Machine
//     answers with its REQUEST): 3, its receipt, the tick of the REPLY
//     (now, or when a Ricart-Agrawala release sends it) and that REPLY's
//     receipt. A REPLY held back: 2. A REPLY or RELEASE in flight: 1, its
//     receipt. A HELLO: 0, its receiver ticks nothing.
//   - A stamped request: n, the tick of its release and the receipts of
//     its RELEASEs (the REPLYs a Ricart-Agrawala release sends are counted
//     as held back).
//   - A request not yet stamped, held back or in the budget: 4n-2, the
//     tick that stamps it, its n-1 REQUESTs and its release.
func ticksLeft(w *world, wt tickWeights) int {
	c := w.c
	n := len(c.ids)
	entry := 4*n - 2 - wt.entryLess
	request := 3 - wt.requestLess
	left := 0
	for p, m := range c.ms {
		if w.budget[p] < 0 {
			panic("explorer: an unbounded budget")
		}
		left += entry * w.budget[p]
		switch {
		case m.state == pending:
			left += entry
		case m.state.stamped():
			left += n
		}
		for j := range m.peers {
			if m.peers[j].deferred {
				left += 2
			}
		}
		for _, l := range c.links[p] {
			for _, e := range l {
				switch e.msg.Kind {
				case Request, PeerUp:
					left += request
				case Reply, Release:
					left++
				}
			}
		}
	}
	return left
}
