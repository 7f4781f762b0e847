package lamportmutex

import "fmt"

// Kind says what a Message is.
type Kind uint8

// The kinds of message. Request, Reply, Release, Hello and Data travel
// between peers; PeerUp and PeerDown are never sent: a Transport makes them
// and delivers them with the messages.
const (
	// Request asks every peer to queue the sender's request, stamped
	// (Message.Clock, Message.From).
	Request Kind = iota + 1
	// Reply acknowledges a Request. Any message with a later timestamp would
	// do; Reply exists so that one is always sent.
	Reply
	// Release removes the sender's request from every queue. It carries the
	// holder's optional payload, which every peer handles before the release
	// takes effect there. A Release from a peer that does not hold the lock
	// withdraws its pending request.
	Release
	// PeerUp reports that a new incarnation of Message.From is reachable:
	// everything from its earlier incarnations has been delivered or dropped,
	// and every later message from From comes from the new one. A Transport
	// delivers it before any message of the new incarnation, including at
	// first contact.
	PeerUp
	// Hello is a peer's first message to a new incarnation of another: its
	// answer to PeerUp, carrying its clock. A Machine ignores everything from
	// a peer until that peer's Hello, because what comes before it may have
	// been meant for an earlier incarnation of the receiver. A Hello is no
	// event of the algorithm: sending it does not tick the clock, and its
	// receiver takes the larger of the two clocks without a tick, so
	// greetings commute and peers that start together start with equal
	// clocks, whatever order the greetings arrive in.
	Hello
	// Data carries an application message (Mutex.Send) beside the
	// algorithm's own, on the same per-pair FIFO stream: a Data message sent
	// after a RELEASE arrives after it. The algorithm ignores it (its Clock
	// is informational); the receiver's Mutex hands its Payload to
	// Handler.HandleMessage.
	Data
	// PeerDown reports that the Transport lost its connection to
	// Message.From. It is informational: the algorithm ignores it, and what
	// is sent to the peer meanwhile is held. The Mutex hands it to
	// Handler.HandlePeerDown.
	PeerDown
)

// String returns the kind's name as used in logs and test scripts.
func (k Kind) String() string {
	switch k {
	case Request:
		return "REQUEST"
	case Reply:
		return "REPLY"
	case Release:
		return "RELEASE"
	case PeerUp:
		return "PEERUP"
	case Hello:
		return "HELLO"
	case Data:
		return "DATA"
	case PeerDown:
		return "PEERDOWN"
	default:
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= Request && k <= PeerDown }

// MaxClock is the greatest clock a message may carry. A message from a
// peer with a larger Clock is a protocol violation (ErrViolation), and a
// local clock never moves past it: it saturates, never wraps (see Machine).
// It leaves room for every clock an honest group can reach.
const MaxClock uint64 = 1 << 63

// MaxClockStep is the most a message from a peer may carry above the
// receiver's clock. A message (other than PeerUp, which a Transport makes)
// whose Clock exceeds the receiver's clock by more than MaxClockStep is a
// protocol violation (ErrViolation) and changes nothing. So one accepted
// message moves a clock by at most MaxClockStep plus a few ticks of the
// receiver's own, and pushing honest clocks from 0 to MaxClock, where
// requests are no longer granted, takes nearly 2^31 accepted messages
// instead of one. The receive rule is not clamped instead, because a
// restarted peer must stamp its request after its peers' HELLOs, so after
// every request queued anywhere, and a clamped HELLO would let it stamp one
// before the holder's and enter beside it.
//
// An honest message jumps that far only when the receiver's clock lags the
// sender's by more than 2^32 events, as when a ledger client whose data
// folder was lost rejoins a cluster past 4 billion mutex events, or when
// one accepted jump of nearly MaxClockStep from a faulty peer put the
// sender that far ahead. The receiver then quarantines the sender: a
// stall, never a safety issue.
const MaxClockStep uint64 = 1 << 32

// Message is one message of the algorithm. Callers never build messages;
// the state machine does, and a Transport carries them unchanged.
type Message struct {
	Kind Kind
	// From and To are peer ids. A Transport fills neither; it checks that
	// From is its own id on Send and that From is the authenticated sender
	// on receipt.
	From string
	To   string
	// Clock is the sender's Lamport clock when it sent the message. For a
	// Request it is the request's timestamp.
	Clock uint64
	// Payload is the holder's update attached to a Release, or the
	// application's message in a Data; nil otherwise.
	Payload []byte
	// Incarnation names an incarnation. On a message between peers it is
	// the receiver's incarnation that the sender addresses (as learned from
	// the receiver's last PeerUp): a receiver ignores a message meant for an
	// earlier incarnation of itself. On PeerUp it is the incarnation of From
	// that came up.
	Incarnation uint64
}

// String formats m for logs and test scripts, e.g. "1->2 REQUEST@3", with
// the payload's length, not its bytes.
func (m Message) String() string {
	s := fmt.Sprintf("%s->%s %s@%d", m.From, m.To, m.Kind, m.Clock)
	if m.Kind == PeerUp {
		s = fmt.Sprintf("%s->%s %s#%d", m.From, m.To, m.Kind, m.Incarnation)
	}
	if m.Payload != nil {
		s += fmt.Sprintf(" payload=%dB", len(m.Payload))
	}
	return s
}
