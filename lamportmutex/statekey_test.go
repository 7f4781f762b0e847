package lamportmutex

import (
	"encoding/binary"
	"hash/maphash"
)

// stateHasher names a whole simulated state (every Machine, every link,
// the checker's memory and the explorer's remaining budgets) by a 128-bit
// hash of a canonical encoding: two independently seeded maphashes, so a
// collision among 10^8 states has probability below 10^-20.
type stateHasher struct {
	buf    []byte
	h1, h2 maphash.Seed
}

func newStateHasher() *stateHasher {
	return &stateHasher{h1: maphash.MakeSeed(), h2: maphash.MakeSeed()}
}

func (h *stateHasher) key(c *cluster, k *checker, counters ...int) [16]byte {
	b := h.buf[:0]
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	flag := func(v bool) {
		if v {
			u(1)
		} else {
			u(0)
		}
	}
	tok := func(t Token) {
		u(t.Clock)
		b = append(b, t.ID...)
		b = append(b, 0)
	}
	for i, m := range c.ms {
		u(uint64(c.inc[i]))
		u(m.inc)
		u(m.clock)
		u(uint64(len(m.q)))
		for _, t := range m.q {
			tok(t)
		}
		for _, p := range m.peers {
			u(p.latest)
			flag(p.heard)
			u(p.inc)
			flag(p.up)
			flag(p.replied)
			flag(p.deferred)
		}
		tok(m.own)
		u(uint64(m.state))
		flag(k.held[i])
	}
	for _, row := range c.links {
		for _, l := range row {
			u(uint64(len(l)))
			for _, e := range l {
				u(uint64(e.msg.Kind))
				u(e.msg.Clock)
				u(e.msg.Incarnation)
				u(uint64(e.destInc))
				u(uint64(len(e.msg.Payload)))
				b = append(b, e.msg.Payload...)
			}
		}
	}
	for _, v := range counters {
		u(uint64(v))
	}
	tok(k.maxTok)
	flag(k.haveMax)
	h.buf = b
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], maphash.Bytes(h.h1, b))
	binary.LittleEndian.PutUint64(key[8:], maphash.Bytes(h.h2, b))
	return key
}
