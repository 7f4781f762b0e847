package lamportmutex

import "errors"

// Algorithm selects the mutual exclusion algorithm a Machine runs.
type Algorithm int

const (
	// Lamport is Lamport's algorithm (1978): REQUEST, REPLY and RELEASE to
	// every peer, 3(N-1) messages per entry. The default.
	Lamport Algorithm = iota
	// RicartAgrawala is Ricart and Agrawala's refinement (1981): a peer
	// holds back its REPLY while it holds the lock or has an earlier
	// request, and sends the held-back REPLYs when it releases, so there is
	// no RELEASE: 2(N-1) messages per entry. A release that carries a
	// payload still sends it to every peer in a RELEASE, ahead of the
	// REPLYs, so updates reach every peer before anyone can enter after it.
	// A waiting request cannot be withdrawn (a REPLY to it may be under
	// way): a cancelled Lock leaves it to be released as soon as it is
	// granted. The Machine keeps no queue of the others' requests, so
	// TryLock cannot see that another peer is ahead and waits like Lock.
	RicartAgrawala
)

// String returns the algorithm's name.
func (a Algorithm) String() string {
	switch a {
	case Lamport:
		return "lamport"
	case RicartAgrawala:
		return "ricart-agrawala"
	}
	return "unknown"
}

// rules returns a's rules; Lamport's for an unknown a.
func (a Algorithm) rules() rules {
	if a == RicartAgrawala {
		return ricartRules{}
	}
	return lamportRules{}
}

// MachineOption configures NewMachine.
type MachineOption func(*Machine)

// WithAlgorithm makes the Machine run a.
func WithAlgorithm(a Algorithm) MachineOption { return func(m *Machine) { m.rules = a.rules() } }

// ricartRules are Ricart and Agrawala's rules. The queue holds nothing but
// our own request: the others' requests are answered or held back.
type ricartRules struct{}

func (ricartRules) String() string { return RicartAgrawala.String() }

// onRequest answers j's request now, or holds the answer back while we hold
// the lock or our request is earlier (rule 2).
func (ricartRules) onRequest(m *Machine, j int, t Token) []Message {
	if m.state == held || (m.state.stamped() && m.own.Less(t)) {
		m.peers[j].deferred = true
		return nil
	}
	return []Message{m.reply(j)}
}

func (ricartRules) onReply(m *Machine, j int) {
	if m.state.stamped() {
		m.peers[j].replied = true
	}
}

// withdraw keeps the request: a REPLY may already be on its way for it, and
// nothing would tell it from one for a later request. It is released as
// soon as it is granted (Machine.tryEnter).
func (ricartRules) withdraw(m *Machine) []Message {
	m.state = abandoned
	return nil
}

// release sends the payload, if any, to every peer, then the REPLYs held
// back (rule 3).
func (ricartRules) release(m *Machine, payload []byte) []Message {
	var out []Message
	if payload != nil {
		out = m.broadcast(Release, m.clock, payload)
	}
	for j := range m.peers {
		if m.peers[j].deferred {
			m.peers[j].deferred = false
			out = append(out, m.reply(j))
		}
	}
	return out
}

// onRelease does nothing (rule 4): no request of j is queued here, and the
// payload is the application's.
func (ricartRules) onRelease(*Machine, int) {}

// answered: j's REPLY to our request came (rule 5).
func (ricartRules) answered(m *Machine, j int) bool { return m.peers[j].replied }

// resendsHeld is false: j cannot enter before our held-back REPLY anyway,
// and j's answer to a resent held request would be taken for an answer to
// our next one.
func (ricartRules) resendsHeld() bool { return false }

func (ricartRules) refuse(m *Machine, j int, msg Message) error {
	if msg.Kind == Request && m.peers[j].deferred {
		return errors.New("a request from a peer whose request waits for our reply")
	}
	return nil
}

// invariant: the queue holds our request alone, and only while stamped; a
// REPLY is held back only while our request is stamped.
func (ricartRules) invariant(m *Machine) error {
	if len(m.q) > 1 {
		return errors.New("others' requests queued under Ricart-Agrawala")
	}
	if m.state.stamped() {
		return nil
	}
	for j := range m.peers {
		if m.peers[j].deferred {
			return errors.New("a REPLY held back with no request of ours stamped")
		}
	}
	return nil
}
