package lamportmutex

import "errors"

// rules are what one algorithm makes of rules 2 to 5 (see Machine). The
// Machine holds all the state and chooses its rules once, in NewMachine; a
// rules value holds nothing, so Clone copies it as it is.
type rules interface {
	// onRequest is rule 2: peer j's request t arrived.
	onRequest(m *Machine, j int, t Token) []Message
	// onReply notes a REPLY from peer j.
	onReply(m *Machine, j int)
	// withdraw handles Release of a waiting request.
	withdraw(m *Machine) []Message
	// release is what rule 3 sends, once our request left the queue; it
	// attaches payload.
	release(m *Machine, payload []byte) []Message
	// onRelease is rule 4: peer j's RELEASE arrived.
	onRelease(m *Machine, j int)
	// answered is rule 5, part ii, for peer j: its answer to our stamped
	// request came.
	answered(m *Machine, j int) bool
	// resendsHeld reports whether a held request is resent to a peer that
	// comes up (see Machine.peerUp).
	resendsHeld() bool
	// refuse returns why no honest peer sends msg from peer j in m's state
	// (see Step), or nil. Accepts has checked everything else.
	refuse(m *Machine, j int, msg Message) error
	// invariant returns the first of the rules' invariants that m breaks,
	// or nil (see Machine.assert).
	invariant(m *Machine) error
	// String names the algorithm.
	String() string
}

// lamportRules are Lamport's rules, as the Machine's doc states them.
type lamportRules struct{}

func (lamportRules) String() string { return Lamport.String() }

// onRequest queues j's request and replies (rule 2).
func (lamportRules) onRequest(m *Machine, j int, t Token) []Message {
	m.q.put(t)
	return []Message{m.reply(j)}
}

func (lamportRules) onReply(*Machine, int) {}

// withdraw releases a waiting request at once: its RELEASE removes it from
// every queue.
func (lamportRules) withdraw(m *Machine) []Message { return m.release(nil) }

// release sends RELEASE with payload to every peer (rule 3).
func (lamportRules) release(m *Machine, payload []byte) []Message {
	return m.broadcast(Release, m.clock, payload)
}

// onRelease removes j's request (rule 4).
func (lamportRules) onRelease(m *Machine, j int) { m.q.remove(m.peers[j].id) }

// answered: a message from j later than our request came (rule 5, part ii).
func (lamportRules) answered(m *Machine, j int) bool { return m.peers[j].latest > m.own.Clock }

func (lamportRules) resendsHeld() bool { return true }

func (lamportRules) refuse(m *Machine, _ int, msg Message) error {
	switch {
	case msg.Kind == Release && msg.Payload != nil && !m.q.has(msg.From):
		return errors.New("a payload from a peer with no request queued here")
	case msg.Kind == Request && m.q.has(msg.From):
		return errors.New("a request from a peer whose request is queued here")
	case msg.Kind == Request && m.state == held && (Token{Clock: msg.Clock, ID: msg.From}).Less(m.own):
		return errors.New("a request ordered before the one holding the lock here")
	}
	return nil
}

// invariant: while we hold the lock, our request heads the queue.
func (lamportRules) invariant(m *Machine) error {
	if m.state == held && !m.first() {
		return errors.New("held, but our request does not head the queue")
	}
	return nil
}
