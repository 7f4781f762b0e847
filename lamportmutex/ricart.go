package lamportmutex

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

// MachineOption configures NewMachine.
type MachineOption func(*Machine)

// WithAlgorithm makes the Machine run a.
func WithAlgorithm(a Algorithm) MachineOption { return func(m *Machine) { m.algo = a } }

// raRequest handles a REQUEST from peer j stamped clock: answer now, or
// hold the answer back while we hold the lock or our request is earlier.
func (m *Machine) raRequest(j int, clock uint64) []Message {
	theirs := Token{Clock: clock, ID: m.ids[j]}
	if m.held || (m.issued && m.own.Less(theirs)) {
		m.deferred[j] = true
		return nil
	}
	m.tick()
	return []Message{m.message(Reply, j, m.clock, nil)}
}

// raRelease sends a payload, if any, to every peer, then the REPLYs held
// back.
func (m *Machine) raRelease(payload []byte) []Message {
	var out []Message
	if payload != nil {
		out = m.broadcast(Release, m.clock, payload)
	}
	for i, d := range m.deferred {
		if d {
			m.deferred[i] = false
			m.tick()
			out = append(out, m.message(Reply, i, m.clock, nil))
		}
	}
	return out
}

// othersReplied reports, per member, whether its REPLY came (true for us).
func (m *Machine) othersReplied() []bool {
	r := make([]bool, len(m.replied))
	for i := range r {
		r[i] = i == m.self || m.replied[i]
	}
	return r
}
