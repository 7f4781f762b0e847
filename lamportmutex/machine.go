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
//  1. Request: put (clock, self) in the queue; send REQUEST to every peer.
//  2. On REQUEST from j: put (msg.Clock, j) in the queue; send REPLY to j.
//  3. Release: remove our request; send RELEASE to every peer.
//  4. On RELEASE from j: remove j's request.
//  5. Enter when our request is first in the queue and from every peer a
//     message with a timestamp later than our request's has been received.
//
// The algorithm is chosen once, in NewMachine (WithAlgorithm): Lamport's
// rules, or Ricart and Agrawala's, which change rules 2 to 5 (see
// RicartAgrawala). The methods below appear in the rules' order.
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
// Why two peers never hold at once: say i holds request r and k holds a
// later r'. k has had from i a message later than r', so (by FIFO, and as
// i's clock only grows along its sends) r reached k before it; i has not
// released r, so r is queued at k ahead of r', and k cannot hold. By the
// same argument, under Lamport's rules, no honest peer's REQUEST ordered
// before r can still arrive while i holds r (and a new incarnation of a
// peer stamps its requests after i's HELLO, whose clock is at least r's):
// Step refuses one, so our request heads our queue for as long as we hold.
// The Machine asserts that, with its other invariants, after every change,
// and panics if one fails: only a bug can break them, never input.
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
	rules rules  // the algorithm's rules, chosen in NewMachine
	inc   uint64 // our incarnation
	self  int    // our index in peers
	peers []peer // every member, ourselves included, sorted by id
	clock uint64
	q     queue
	state reqState
	own   Token // our request, while it is stamped (see reqState.stamped)
}

// reqState is where our request stands.
type reqState uint8

const (
	idle    reqState = iota // no request
	pending                 // requested before every peer's HELLO came: not yet stamped
	waiting                 // stamped, queued and sent to every peer; not yet granted
	held                    // granted: we hold the lock
	// abandoned is a waiting request that was withdrawn (Ricart-Agrawala
	// only): it is released as soon as it is granted.
	abandoned
)

// stamped reports whether our request is in the queue and was sent to
// every peer.
func (s reqState) stamped() bool { return s == waiting || s == held || s == abandoned }

// peer is what a Machine knows of one member.
type peer struct {
	id     string
	inc    uint64 // its incarnation, from its last PeerUp
	up     bool   // a PeerUp for it came, so we greeted it
	heard  bool   // its HELLO arrived (since we started, or since its PeerUp)
	latest uint64 // highest Clock received from it since its last PeerUp
	// Ricart-Agrawala only.
	replied  bool // its REPLY to our request came
	deferred bool // our REPLY to its request waits for our release
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
	m := &Machine{rules: lamportRules{}, inc: inc, peers: make([]peer, len(ids))}
	for i, p := range ids {
		m.peers[i].id = p
	}
	m.self, _ = slices.BinarySearch(ids, id)
	m.peers[m.self].heard = true
	for _, o := range opts {
		o(m)
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
func (m *Machine) ID() string { return m.peers[m.self].id }

// Members returns all member ids, sorted.
func (m *Machine) Members() []string {
	ids := make([]string, len(m.peers))
	for i, p := range m.peers {
		ids[i] = p.id
	}
	return ids
}

// index returns the index of member id in peers.
func (m *Machine) index(id string) (int, bool) {
	lo, hi := 0, len(m.peers)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if m.peers[h].id < id {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo, lo < len(m.peers) && m.peers[lo].id == id
}

// Clock returns the Lamport clock.
func (m *Machine) Clock() uint64 { return m.clock }

// Held reports whether this peer holds the lock.
func (m *Machine) Held() bool { return m.state == held }

// Requesting reports whether a request is outstanding: waiting, held back
// until every peer has been heard from, or held.
func (m *Machine) Requesting() bool {
	return m.state == pending || m.state == waiting || m.state == held
}

// Own returns our outstanding request's token, once it has been stamped.
func (m *Machine) Own() (Token, bool) { return m.own, m.state.stamped() }

// Queue returns a copy of the request queue, first in line first.
func (m *Machine) Queue() []Token { return slices.Clone(m.q) }

// Synced reports whether every peer's HELLO has arrived, so that a request
// can be stamped.
func (m *Machine) Synced() bool {
	for j := range m.peers {
		if !m.peers[j].heard {
			return false
		}
	}
	return true
}

// Missing returns the peers our request still waits for, in id order: for
// a stamped request not yet granted, those whose answer has not come (under
// Lamport's rules a message later than the request, under
// Ricart-Agrawala's a REPLY); for a request held back until every peer has
// been heard from, those whose HELLO has not come. It returns nil when no
// request waits.
func (m *Machine) Missing() []string {
	var ids []string
	for j, p := range m.peers {
		switch {
		case j == m.self:
		case m.state == pending && !p.heard,
			(m.state == waiting || m.state == abandoned) && !m.rules.answered(m, j):
			ids = append(ids, p.id)
		}
	}
	return ids
}

// PeerIncarnation returns peer's incarnation as its last PeerUp named it,
// and whether a PeerUp for it has come. It returns 0, false for ourselves
// and for a peer that is not a member.
func (m *Machine) PeerIncarnation(peer string) (inc uint64, up bool) {
	j, ok := m.index(peer)
	if !ok || j == m.self {
		return 0, false
	}
	return m.peers[j].inc, m.peers[j].up
}

// Behind reports whether our request, though not held, is settled as not
// first: every peer has answered it, so no earlier request can still arrive
// and every release sent before it has arrived, and an earlier request is
// queued. TryLock gives up then. (Until then it waits, so while a peer is
// down TryLock waits for its ctx.) Under Ricart-Agrawala it is always false:
// the Machine keeps no queue of the others' requests.
func (m *Machine) Behind() bool {
	return m.state == waiting && m.answered() && !m.first()
}

// Request starts a request for the lock (rule 1). It returns ErrRequested
// if one is outstanding. With a single member the lock is held on return.
func (m *Machine) Request() ([]Message, error) {
	defer m.assert()
	switch m.state {
	case idle:
	case abandoned: // the withdrawn request serves again
		m.state = waiting
		return nil, nil
	default:
		return nil, ErrRequested
	}
	if !m.Synced() {
		m.state = pending
		return nil, nil
	}
	out := m.issue()
	return append(out, m.tryEnter()...), nil
}

// issue stamps our request, queues it and sends it to every peer (rule 1).
func (m *Machine) issue() []Message {
	m.tick()
	m.own = Token{Clock: m.clock, ID: m.ID()}
	m.state = waiting
	m.q.put(m.own)
	for j := range m.peers {
		m.peers[j].replied = false
	}
	return m.broadcast(Request, m.clock, nil)
}

// Step handles one received message and returns the messages to send: a
// REQUEST (rule 2), a REPLY, a RELEASE (rule 4), a HELLO, a PeerUp; and
// then, as the message may have satisfied it, the entry rule (rule 5). It
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
//   - Under Lamport's algorithm, a REQUEST ordered before ours while we
//     hold the lock: see the Machine's doc.
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
//
// A Data (the application's) or a PeerDown (the Transport's news) changes
// nothing and sends nothing.
func (m *Machine) Step(msg Message) ([]Message, error) {
	j, err := m.accepts(msg)
	if err != nil {
		return nil, err
	}
	defer m.assert()
	var out []Message
	switch msg.Kind {
	case PeerUp:
		out = m.peerUp(j, msg.Incarnation)
	case Data, PeerDown:
		return nil, nil
	case Hello:
		m.hello(j, msg.Clock)
	default:
		m.clock = receiveClock(m.clock, msg)
		m.peers[j].latest = max(m.peers[j].latest, msg.Clock)
		switch msg.Kind {
		case Request:
			out = m.rules.onRequest(m, j, Token{Clock: msg.Clock, ID: msg.From})
		case Reply:
			m.rules.onReply(m, j)
		case Release:
			m.rules.onRelease(m, j)
		}
	}
	if m.state == pending && m.Synced() {
		out = append(out, m.issue()...)
	}
	return append(out, m.tryEnter()...), nil
}

// reply answers peer j's request (rule 2).
func (m *Machine) reply(j int) Message {
	m.tick()
	return m.message(Reply, j, m.clock, nil)
}

// Release gives up the lock (rule 3), attaching payload to the RELEASE
// sent to every peer; each peer hands the payload to its handler before the
// release takes effect there. Called while the request is still waiting,
// Release withdraws it (payload must then be nil). It returns ErrNotHeld if
// there is nothing to release or withdraw.
func (m *Machine) Release(payload []byte) ([]Message, error) {
	defer m.assert()
	switch {
	case m.state == held:
		return m.release(payload), nil
	case payload != nil || !m.Requesting():
		return nil, ErrNotHeld
	case m.state == pending:
		m.state = idle
		return nil, nil
	}
	return m.rules.withdraw(m), nil
}

// release removes our request from the queue and sends what rule 3 sends:
// it leaves the critical section, or withdraws a waiting request.
func (m *Machine) release(payload []byte) []Message {
	m.state = idle
	m.q.remove(m.ID())
	m.tick()
	return m.rules.release(m, payload)
}

// Leave gives up any request for good, for a peer that stops: it releases
// the lock if held, withdraws a waiting request, and answers every request
// it was holding back. The Machine must not be used after it.
func (m *Machine) Leave() []Message {
	defer m.assert()
	if m.state.stamped() {
		return m.release(nil)
	}
	m.state = idle
	return nil
}

// tryEnter takes the lock if the entry rule holds (rule 5): our request
// heads the queue (under Ricart-Agrawala it is all the queue holds), and
// every peer has answered it. A withdrawn request is released then instead;
// tryEnter returns what that sends. A request stamped MaxClock is never
// granted (see the Machine's doc).
func (m *Machine) tryEnter() []Message {
	if m.state != waiting && m.state != abandoned || !m.first() || !m.answered() {
		return nil
	}
	if m.state == abandoned {
		return m.release(nil)
	}
	if m.own.Clock < MaxClock {
		m.state = held
	}
	return nil
}

// first reports whether our request heads the queue (rule 5, part i).
func (m *Machine) first() bool {
	h, ok := m.q.head()
	return ok && h == m.own
}

// answered reports whether every peer has answered our request (rule 5,
// part ii).
func (m *Machine) answered() bool {
	for j := range m.peers {
		if j != m.self && !m.rules.answered(m, j) {
			return false
		}
	}
	return true
}

// peerUp handles a PeerUp: it forgets what an earlier incarnation of peer j
// said, ignores j until its HELLO, and greets the new incarnation with a
// HELLO and our stamped request, resent with its original stamp so that the
// queue order does not change (unless the rules keep a held request back).
func (m *Machine) peerUp(j int, inc uint64) []Message {
	m.peers[j] = peer{id: m.peers[j].id, inc: inc, up: true}
	m.q.remove(m.peers[j].id)
	out := []Message{m.message(Hello, j, m.clock, nil)}
	if m.state.stamped() && (m.state != held || m.rules.resendsHeld()) {
		out = append(out, m.message(Request, j, m.own.Clock, nil))
	}
	return out
}

// hello handles peer j's HELLO: its clock, taken without a tick (see Hello).
func (m *Machine) hello(j int, clock uint64) {
	m.clock = max(m.clock, clock)
	m.peers[j].latest = max(m.peers[j].latest, clock)
	m.peers[j].heard = true
}

// Accepts reports, without changing anything, the error Step would return
// for msg before acting on it: nil if Step would act on it. A driver asks
// before it hands a release's payload to the application, so that a payload
// meant for an earlier incarnation of this peer is not applied.
func (m *Machine) Accepts(msg Message) error {
	_, err := m.accepts(msg)
	return err
}

// accepts is Accepts, and returns the sender's index in peers.
func (m *Machine) accepts(msg Message) (int, error) {
	j, ok := m.index(msg.From)
	switch {
	case !ok || j == m.self:
		return 0, fmt.Errorf("%w: %v", ErrNotMember, msg)
	case msg.To != m.ID():
		return j, fmt.Errorf("%w: %w: %v is not addressed to %s", ErrViolation, ErrNotMember, msg, m.ID())
	case !msg.Kind.Valid():
		return j, fmt.Errorf("%w: %w: %v", ErrViolation, ErrBadMessage, msg)
	case msg.Kind == PeerUp || msg.Kind == PeerDown:
		return j, nil
	case msg.Clock > MaxClock:
		return j, fmt.Errorf("%w: %v: clock above MaxClock", ErrViolation, msg)
	case msg.Incarnation != m.inc:
		return j, fmt.Errorf("%w: %v is for incarnation %d, this is %d", ErrStale, msg, msg.Incarnation, m.inc)
	case msg.Kind != Hello && !m.peers[j].heard:
		return j, fmt.Errorf("%w: %v", ErrStale, msg)
	case msg.Clock > m.clock && msg.Clock-m.clock > MaxClockStep:
		return j, fmt.Errorf("%w: %v: clock more than MaxClockStep above %d", ErrViolation, msg, m.clock)
	}
	if err := m.rules.refuse(m, j, msg); err != nil {
		return j, fmt.Errorf("%w: %v: %s", ErrViolation, msg, err)
	}
	return j, nil
}

// Data returns an application message carrying payload to peer to,
// addressed to to's current incarnation (Message.Kind Data). It returns
// ErrNotMember for a peer that is not another member, and ErrPeerDown
// before to's first PeerUp: until this Machine has greeted to, to would
// ignore the message. It changes nothing in the Machine.
func (m *Machine) Data(to string, payload []byte) (Message, error) {
	j, ok := m.index(to)
	switch {
	case !ok || j == m.self:
		return Message{}, fmt.Errorf("%w: %q", ErrNotMember, to)
	case !m.peers[j].up:
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
// A Hello takes the larger clock without a tick (see Hello); PeerUp and
// PeerDown (the Transport's) and Data (the application's) are no part of
// the algorithm and leave it unchanged. msg.Clock is at most MaxClock (see
// Accepts).
func receiveClock(clock uint64, msg Message) uint64 {
	switch msg.Kind {
	case PeerUp, PeerDown, Data:
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

func (m *Machine) broadcast(k Kind, clock uint64, payload []byte) []Message {
	out := make([]Message, 0, len(m.peers)-1)
	for j := range m.peers {
		if j != m.self {
			out = append(out, m.message(k, j, clock, payload))
		}
	}
	return out
}

func (m *Machine) message(k Kind, to int, clock uint64, payload []byte) Message {
	return Message{Kind: k, From: m.ID(), To: m.peers[to].id, Clock: clock, Payload: payload, Incarnation: m.peers[to].inc}
}

// Clone returns an independent copy of m, for model checkers that explore
// several futures of one state.
func (m *Machine) Clone() *Machine {
	c := *m
	c.q = slices.Clone(m.q)
	c.peers = slices.Clone(m.peers)
	return &c
}
