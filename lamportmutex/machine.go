package lamportmutex

import (
	"fmt"
	"slices"
)

// Machine is Lamport's mutual exclusion algorithm for one peer as a pure,
// deterministic state machine: no goroutines, no clocks, no I/O. Each method
// returns the messages to send, in order; the caller hands them to a
// Transport. Mutex drives a Machine; simulations and model checkers drive it
// directly. A Machine is not safe for concurrent use.
//
// The rules (Lamport, "Time, Clocks, and the Ordering of Events in a
// Distributed System", 1978), with the clock ticked once per send event and
// set to max(clock, msg.Clock)+1 on every receipt:
//
//   - Request: put (clock, self) in the queue; send REQUEST to every peer.
//   - On REQUEST from j: put (msg.Clock, j) in the queue; send REPLY to j.
//   - Enter when our request is first in the queue and from every peer a
//     message with a timestamp later than our request's has been received.
//   - Release: remove our request; send RELEASE to every peer.
//   - On RELEASE from j: remove j's request.
//
// Restarts and first contact: a Transport reports PeerUp(j) when it first
// reaches peer j and whenever j comes back as a new incarnation. The
// Machine then forgets j's old request, and sends j a HELLO carrying its
// clock, followed by its own outstanding request, resent with its original
// stamp. Every message carries the incarnation of its receiver that the
// sender addresses, and a Machine ignores messages meant for another
// incarnation of itself: j may have sent them before it learned that we
// restarted, and they would break the FIFO reasoning the entry rule rests
// on. It also ignores everything from j before j's HELLO (since the
// Machine started, or since PeerUp(j)).
// And a Machine stamps no request before it has had a HELLO from every
// peer, so that its clock, and so its request, is later than every request
// queued anywhere; a Request made earlier is held back until then.
//
// No clock wraps. A message whose Clock exceeds MaxClock, or exceeds the
// receiver's clock by more than MaxClockStep, is a protocol violation
// (ErrViolation) and changes nothing; the local clock saturates at
// MaxClock instead of wrapping. Safety does not rest on clocks being
// distinct, only on every peer's clocks being monotone non-decreasing along
// its sends, which saturation keeps: a peer that stamps a request at or
// below c sends it before any message stamped later than c. And a request
// stamped MaxClock is never granted: Lamport's entry rule needs a message
// strictly later than the request from every peer, and under
// Ricart-Agrawala the Machine refuses it outright (two requests stamped
// MaxClock after each other's, ordered by id only, would both be
// answered). Below the top, a peer that answered a request stamps its own
// later ones strictly after it, as the algorithms need. So a faulty peer
// that drives the clocks to the top (nearly 2^31 messages, see
// MaxClockStep) stalls the group; it cannot put two honest peers in the
// critical section at once.
type Machine struct {
	inc     uint64   // our incarnation
	peerInc []uint64 // per member: its incarnation, from its last PeerUp
	up      []bool   // per member: a PeerUp for it came, so we greeted it
	self    int      // index of our id in ids
	ids     []string // all members, sorted
	clock   uint64
	q       queue
	latest  []uint64 // per member: highest Clock received since its last PeerUp
	heard   []bool   // per member: its HELLO arrived (since we started, or since its PeerUp)
	own     Token    // our outstanding request, if issued
	issued  bool     // own is in the queue and was sent to every peer
	pending bool     // Request was called before hearing from every peer
	held    bool

	algo     Algorithm
	replied  []bool // Ricart-Agrawala: per member, its REPLY to our request came
	deferred []bool // Ricart-Agrawala: per member, our REPLY to its request waits for our release
	abandon  bool   // Ricart-Agrawala: our waiting request was withdrawn; release it once granted

	// skipLatest, set only by tests, breaks the entry rule (enter without a
	// later message from every peer) so that tests can show the checkers
	// catch it.
	skipLatest bool
}

// NewMachine returns the state machine of incarnation inc of peer id in a
// group of members (which includes id). Ids must be non-empty and distinct.
// The incarnation is the one the Transport announces to the peers in their
// PeerUp for id.
func NewMachine(id string, members []string, inc uint64, opts ...MachineOption) (*Machine, error) {
	ids, err := memberList(id, members)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		inc:     inc,
		peerInc: make([]uint64, len(ids)),
		up:      make([]bool, len(ids)),
		ids:     ids,
		latest:  make([]uint64, len(ids)),
		heard:   make([]bool, len(ids)),
	}
	m.self, _ = slices.BinarySearch(ids, id)
	m.heard[m.self] = true
	for _, o := range opts {
		o(m)
	}
	if m.algo == RicartAgrawala {
		m.replied = make([]bool, len(ids))
		m.deferred = make([]bool, len(ids))
	}
	return m, nil
}

// memberList validates id and members and returns the members sorted.
func memberList(id string, members []string) ([]string, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty own id", ErrConfig)
	}
	ids := slices.Clone(members)
	slices.Sort(ids)
	for i, p := range ids {
		if p == "" {
			return nil, fmt.Errorf("%w: empty peer id", ErrConfig)
		}
		if i > 0 && ids[i-1] == p {
			return nil, fmt.Errorf("%w: duplicate peer id %q", ErrConfig, p)
		}
	}
	if _, ok := slices.BinarySearch(ids, id); !ok {
		return nil, fmt.Errorf("%w: own id %q not among peers %q", ErrConfig, id, members)
	}
	return ids, nil
}

// ID returns the peer's own id.
func (m *Machine) ID() string { return m.ids[m.self] }

// Members returns all member ids, sorted.
func (m *Machine) Members() []string { return slices.Clone(m.ids) }

// Clock returns the Lamport clock.
func (m *Machine) Clock() uint64 { return m.clock }

// Held reports whether this peer holds the lock.
func (m *Machine) Held() bool { return m.held }

// Requesting reports whether a request is outstanding: waiting, held back
// until every peer has been heard from, or held.
func (m *Machine) Requesting() bool { return (m.issued && !m.abandon) || m.pending }

// Own returns our outstanding request's token, once it has been stamped.
func (m *Machine) Own() (Token, bool) { return m.own, m.issued }

// Queue returns a copy of the request queue, first in line first.
func (m *Machine) Queue() []Token { return slices.Clone(m.q) }

// Synced reports whether every peer's HELLO has arrived, so that a request
// can be stamped.
func (m *Machine) Synced() bool { return !slices.Contains(m.heard, false) }

// Behind reports whether our request, though not held, is settled as not
// first: every peer has sent a message later than it, so no earlier request
// can still arrive and every release sent before it has arrived, and an
// earlier request is queued. TryLock gives up then. (Until then it waits, so
// while a peer is down TryLock waits for its ctx.)
func (m *Machine) Behind() bool {
	if m.algo == RicartAgrawala {
		return false // it keeps no queue of the others' requests
	}
	if !m.issued || m.held || !m.complete() {
		return false
	}
	h, _ := m.q.head()
	return h != m.own
}

// Missing returns the peers whose later message our outstanding request
// still waits for; for a request held back until every peer has been heard
// from, the peers not heard from yet. It is empty when no request is
// outstanding or the lock is held.
func (m *Machine) Missing() []string {
	var out []string
	switch {
	case m.issued && !m.held:
		for i, id := range m.ids {
			if i != m.self && m.latest[i] <= m.own.Clock {
				out = append(out, id)
			}
		}
	case m.pending:
		for i, id := range m.ids {
			if !m.heard[i] {
				out = append(out, id)
			}
		}
	}
	return out
}

// PeerIncarnation returns the incarnation of peer named by its last PeerUp,
// and whether one came.
func (m *Machine) PeerIncarnation(peer string) (inc uint64, up bool) {
	j, ok := slices.BinarySearch(m.ids, peer)
	if !ok || j == m.self || !m.up[j] {
		return 0, false
	}
	return m.peerInc[j], true
}

// Request starts a request for the lock. It returns ErrRequested if one is
// outstanding. With a single member the lock is held on return.
func (m *Machine) Request() ([]Message, error) {
	if m.Requesting() {
		return nil, ErrRequested
	}
	if m.abandon { // Ricart-Agrawala: the withdrawn request serves again
		m.abandon = false
		return nil, nil
	}
	if !m.Synced() {
		m.pending = true
		return nil, nil
	}
	out := m.issue()
	return append(out, m.tryEnter()...), nil
}

// issue stamps our request, queues it and broadcasts it.
func (m *Machine) issue() []Message {
	m.pending = false
	m.tick()
	m.own = Token{Clock: m.clock, ID: m.ID()}
	m.issued = true
	m.q.put(m.own)
	if m.algo == RicartAgrawala {
		clear(m.replied)
	}
	return m.broadcast(Request, m.clock, nil)
}

// Release gives up the lock, attaching payload to the RELEASE sent to every
// peer; each peer hands the payload to its handler before the release takes
// effect there. Called while the request is still waiting, Release withdraws
// it (payload must then be nil). It returns ErrNotHeld if there is nothing
// to release or withdraw.
func (m *Machine) Release(payload []byte) ([]Message, error) {
	switch {
	case m.held:
	case payload != nil || !m.Requesting():
		return nil, ErrNotHeld
	case m.pending:
		m.pending = false
		return nil, nil
	case m.algo == RicartAgrawala:
		// A REPLY may already be on its way for this request, and nothing
		// would tell it from one for a later request: keep the request, and
		// release it as soon as it is granted.
		m.abandon = true
		return nil, nil
	}
	return m.release(payload), nil
}

// release leaves the critical section, or withdraws a waiting request.
func (m *Machine) release(payload []byte) []Message {
	m.held, m.issued, m.abandon = false, false, false
	m.q.remove(m.ID())
	m.tick()
	if m.algo == RicartAgrawala {
		return m.raRelease(payload)
	}
	return m.broadcast(Release, m.clock, payload)
}

// Leave gives up any request for good, for a peer that stops: it releases
// the lock if held, withdraws a waiting request, and answers every request
// it was holding back. The Machine must not be used after it.
func (m *Machine) Leave() []Message {
	switch {
	case m.issued:
		return m.release(nil)
	case m.algo == RicartAgrawala:
		return m.raRelease(nil) // answers held back while a request was pending
	}
	return nil
}

// Step handles one received message and returns the messages to send. It
// refuses, leaving the Machine unchanged: a message not from a peer of this
// machine (ErrNotMember); one meant for another incarnation of this peer
// or arriving before its sender's HELLO (ErrStale); and a protocol
// violation (ErrViolation): a message not addressed to this peer (also
// ErrNotMember), of unknown kind (also ErrBadMessage), with a Clock above
// MaxClock or more than MaxClockStep above this Machine's clock, or a
// message no honest peer sends in this state:
//
//   - Under Lamport's algorithm, a RELEASE carrying a payload from a peer
//     that has no request in the queue (only a holder attaches a payload,
//     and a holder's request is in every queue until its release).
//   - Under Lamport's algorithm, a REQUEST from a peer that has a request
//     in the queue. An honest peer sends its next request only after the
//     RELEASE (or withdrawal, also a RELEASE) of the previous one, which
//     arrives first by FIFO; it resends a request only to an incarnation
//     that came up since, and the PeerUp that makes us greet a restarted
//     peer removes its old request first. Each REQUEST is answered with a
//     REPLY, so without this check a peer that floods REQUESTs and reads
//     nothing would make us queue REPLYs for it without bound.
//   - Under Ricart-Agrawala, a REQUEST from a peer whose earlier request
//     waits for our REPLY: it cannot be granted, nor withdrawn, before
//     that REPLY.
//
// Under Ricart-Agrawala nothing else is checked: the Machine keeps no queue
// of the others' requests, and a held request is not resent to a peer that
// restarted, so an honest holder's RELEASE may follow no REQUEST this
// incarnation saw (the application judges the payload); and a request
// answered at once leaves no trace, and nothing arrives from the requester
// between its release and its next request, so a REQUEST we answered at once
// cannot be told from a repeated one.
func (m *Machine) Step(msg Message) ([]Message, error) {
	if err := m.Accepts(msg); err != nil {
		return nil, err
	}
	j, _ := slices.BinarySearch(m.ids, msg.From)
	var out []Message
	switch {
	case msg.Kind == PeerUp:
		out = m.peerUp(j, msg.Incarnation)
	case msg.Kind == Data || msg.Kind == PeerDown:
		return nil, nil // the application's, or the transport's news: no part of the algorithm
	case msg.Kind == Hello:
		m.clock = receiveClock(m.clock, msg)
		m.latest[j] = max(m.latest[j], msg.Clock)
		m.heard[j] = true
	default:
		m.clock = receiveClock(m.clock, msg)
		m.latest[j] = max(m.latest[j], msg.Clock)
		switch msg.Kind {
		case Request:
			if m.algo == RicartAgrawala {
				out = append(out, m.raRequest(j, msg.Clock)...)
				break
			}
			m.q.put(Token{Clock: msg.Clock, ID: msg.From})
			m.tick()
			out = append(out, m.message(Reply, j, m.clock, nil))
		case Reply:
			if m.algo == RicartAgrawala && m.issued {
				m.replied[j] = true
			}
		case Release:
			m.q.remove(msg.From)
		}
	}
	if m.pending && m.Synced() {
		out = append(out, m.issue()...)
	}
	out = append(out, m.tryEnter()...)
	return out, nil
}

// Accepts reports, without changing anything, the error Step would return
// for msg before acting on it: nil if Step would act on it. A driver asks
// before it hands a release's payload to the application, so that a payload
// meant for an earlier incarnation of this peer is not applied.
func (m *Machine) Accepts(msg Message) error {
	j, ok := slices.BinarySearch(m.ids, msg.From)
	switch {
	case !ok || j == m.self:
		return fmt.Errorf("%w: %v", ErrNotMember, msg)
	case msg.To != m.ID():
		return fmt.Errorf("%w: %w: %v is not addressed to %s", ErrViolation, ErrNotMember, msg, m.ID())
	case !msg.Kind.Valid():
		return fmt.Errorf("%w: %w: %v", ErrViolation, ErrBadMessage, msg)
	case msg.Kind == PeerUp || msg.Kind == PeerDown:
		return nil
	case msg.Clock > MaxClock:
		return fmt.Errorf("%w: %v: clock above MaxClock", ErrViolation, msg)
	case msg.Incarnation != m.inc:
		return fmt.Errorf("%w: %v is for incarnation %d, this is %d", ErrStale, msg, msg.Incarnation, m.inc)
	case msg.Kind != Hello && !m.heard[j]:
		return fmt.Errorf("%w: %v", ErrStale, msg)
	case msg.Clock > m.clock && msg.Clock-m.clock > MaxClockStep:
		return fmt.Errorf("%w: %v: clock more than MaxClockStep above %d", ErrViolation, msg, m.clock)
	case msg.Kind == Release && msg.Payload != nil && m.algo == Lamport && !m.q.has(msg.From):
		return fmt.Errorf("%w: %v: a payload from a peer with no request queued here", ErrViolation, msg)
	case msg.Kind == Request && m.algo == Lamport && m.q.has(msg.From):
		return fmt.Errorf("%w: %v: a request from a peer whose request is queued here", ErrViolation, msg)
	case msg.Kind == Request && m.algo == RicartAgrawala && m.deferred[j]:
		return fmt.Errorf("%w: %v: a request from a peer whose request waits for our reply", ErrViolation, msg)
	}
	return nil
}

// Data returns an application message carrying payload to peer to,
// addressed to to's current incarnation (Message.Kind Data). It returns
// ErrNotMember for a peer that is not another member, and ErrPeerDown
// before to's first PeerUp: until this Machine has greeted to, to would
// ignore the message. It changes nothing in the Machine.
func (m *Machine) Data(to string, payload []byte) (Message, error) {
	j, ok := slices.BinarySearch(m.ids, to)
	switch {
	case !ok || j == m.self:
		return Message{}, fmt.Errorf("%w: %q", ErrNotMember, to)
	case !m.up[j]:
		return Message{}, fmt.Errorf("%w: %s", ErrPeerDown, to)
	}
	return m.message(Data, j, m.clock, payload), nil
}

// AdvanceClock moves the clock forward to at least min(c, MaxClock), never
// back. An application that persists the clocks of its grants (the
// ledger's blocks carry them) calls it at start-up, so that requests after
// a restart are stamped after every grant it knows of.
func (m *Machine) AdvanceClock(c uint64) { m.clock = max(m.clock, min(c, MaxClock)) }

// receiveClock is the clock right after the receive rule for msg at a peer
// whose clock is clock: max(clock, msg.Clock)+1, saturating at MaxClock.
// A Hello takes the larger clock without a tick (see Hello); PeerUp (the
// Transport's) and Data (the application's) are no part of the algorithm
// and leave it unchanged. msg.Clock is at most MaxClock (see Accepts).
func receiveClock(clock uint64, msg Message) uint64 {
	switch msg.Kind {
	case PeerUp, Data:
		return clock
	case Hello:
		return max(clock, msg.Clock)
	}
	return min(max(clock, msg.Clock)+1, MaxClock)
}

// tick advances the clock by one local event, saturating at MaxClock.
func (m *Machine) tick() {
	if m.clock < MaxClock {
		m.clock++
	}
}

// peerUp forgets what an earlier incarnation of peer j said, ignores j
// until its HELLO, and greets the new incarnation.
func (m *Machine) peerUp(j int, inc uint64) []Message {
	m.peerInc[j] = inc
	m.up[j] = true
	m.q.remove(m.ids[j])
	m.latest[j] = 0
	m.heard[j] = false
	if m.algo == RicartAgrawala {
		m.replied[j], m.deferred[j] = false, false // the old incarnation's answer and request are gone
	}
	out := []Message{m.message(Hello, j, m.clock, nil)}
	// Our request is resent with its original stamp: the queue order must
	// not change. Under Ricart-Agrawala a held request is not: j cannot
	// enter before our held-back REPLY anyway, and j's answer to a resent
	// held request would be taken for an answer to our next one.
	if m.issued && !(m.algo == RicartAgrawala && m.held) {
		out = append(out, m.message(Request, j, m.own.Clock, nil))
	}
	return out
}

// complete reports whether every peer has sent a message later than our
// request, so every earlier request is in our queue.
func (m *Machine) complete() bool {
	if m.skipLatest {
		return true
	}
	for i, c := range m.latest {
		if i != m.self && c <= m.own.Clock {
			return false
		}
	}
	return true
}

// tryEnter takes the lock if the entry rule holds (Lamport's, or a REPLY
// from every peer under Ricart-Agrawala). A withdrawn Ricart-Agrawala
// request is released at once; tryEnter returns what that sends.
func (m *Machine) tryEnter() []Message {
	if !m.issued || m.held {
		return nil
	}
	if m.algo == RicartAgrawala {
		if !m.skipLatest && slices.Contains(m.othersReplied(), false) {
			return nil
		}
		if m.abandon {
			return m.release(nil)
		}
		if m.own.Clock == MaxClock && !m.skipLatest {
			return nil // see the Machine's doc: never granted
		}
		m.held = true
		return nil
	}
	if !m.complete() {
		return nil
	}
	if h, _ := m.q.head(); h == m.own {
		m.held = true
	}
	return nil
}

func (m *Machine) broadcast(k Kind, clock uint64, payload []byte) []Message {
	out := make([]Message, 0, len(m.ids)-1)
	for i := range m.ids {
		if i != m.self {
			out = append(out, m.message(k, i, clock, payload))
		}
	}
	return out
}

func (m *Machine) message(k Kind, to int, clock uint64, payload []byte) Message {
	return Message{Kind: k, From: m.ID(), To: m.ids[to], Clock: clock, Payload: payload, Incarnation: m.peerInc[to]}
}

// Clone returns an independent copy of m, for model checkers that explore
// several futures of one state.
func (m *Machine) Clone() *Machine {
	c := *m
	c.q = slices.Clone(m.q)
	c.latest = slices.Clone(m.latest)
	c.heard = slices.Clone(m.heard)
	c.peerInc = slices.Clone(m.peerInc)
	c.up = slices.Clone(m.up)
	c.replied = slices.Clone(m.replied)
	c.deferred = slices.Clone(m.deferred)
	return &c
}
