package lamportmutex

import (
	"errors"
	"fmt"
)

// assert panics if m breaks one of its invariants. Input cannot break them
// (Step refuses what would); only a bug in the Machine can. Every method
// that changes the Machine asserts on its way out. The checks cost a few
// comparisons per queued request and per peer.
func (m *Machine) assert() {
	if err := m.invariant(); err != nil {
		panic(fmt.Sprintf("lamportmutex: Machine %s broke an invariant: %v (state %d, own %v, queue %v)",
			m.ID(), err, m.state, m.own, m.q))
	}
}

// invariant returns the first invariant m breaks, or nil:
//   - the queue holds no more requests than there are members (queue.put
//     keeps it sorted with one per peer, and asserts that as it inserts);
//   - our request is in the queue while it is stamped (so a held request
//     is queued), and no request of ours is queued otherwise;
//   - a request is held back only while some peer's HELLO is missing;
//   - and the rules' own (see lamportRules.invariant, ricartRules.invariant).
func (m *Machine) invariant() error {
	if len(m.q) > len(m.peers) {
		return errors.New("more requests queued than there are members")
	}
	switch stamped := m.state.stamped(); {
	case stamped && !m.q.hasToken(m.own):
		return errors.New("our stamped request is not queued")
	case !stamped && m.q.has(m.ID()):
		return errors.New("a request of ours queued, none stamped")
	case m.state == pending && m.Synced():
		return errors.New("a request held back though every peer was heard from")
	}
	return m.rules.invariant(m)
}
