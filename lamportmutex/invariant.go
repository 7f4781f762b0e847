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
//   - the queue is sorted by Token.Less and holds at most one request per
//     peer;
//   - our request is in the queue exactly while it is stamped (so a held
//     request is queued);
//   - a request is held back only while some peer's HELLO is missing;
//   - and the rules' own (see lamportRules.invariant, ricartRules.invariant).
func (m *Machine) invariant() error {
	for i, t := range m.q {
		if i > 0 && !m.q[i-1].Less(t) {
			return errors.New("queue out of order")
		}
		for _, u := range m.q[:i] {
			if u.ID == t.ID {
				return fmt.Errorf("two requests of %s queued", t.ID)
			}
		}
	}
	queued := false
	for _, t := range m.q {
		if t.ID == m.ID() {
			queued = t == m.own
			if !queued {
				return errors.New("a request of ours queued that is not our own")
			}
		}
	}
	switch {
	case queued != m.state.stamped():
		return fmt.Errorf("our request queued: %t, stamped: %t", queued, m.state.stamped())
	case m.state == pending && m.Synced():
		return errors.New("a request held back though every peer was heard from")
	}
	return m.rules.invariant(m)
}
