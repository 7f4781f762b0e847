package lamportmutex

import (
	"fmt"
	"log/slog"
)

// Config configures a Mutex.
type Config struct {
	// ID is this peer's id. Required.
	ID string
	// Peers lists every member of the group, including ID. Ids must be
	// non-empty and distinct, and every member must be configured with the
	// same list.
	Peers []string
	// Transport carries messages to and from the other peers; its ID must
	// be ID. Required. The Mutex does not close it: close the Mutex first,
	// then the Transport.
	Transport Transport
	// The callbacks below are the application's side of the Mutex. The
	// Mutex calls them one at a time, never two at once, on the
	// Transport's goroutines and without holding its own lock: a slow
	// callback delays the delivery of what peers send, never Lock, Unlock
	// or Send. A callback must not call Lock, TryLock or Close (they may
	// wait for messages that only its return lets in); Unlock, Send,
	// Quarantine, State, Stats and Err are fine.

	// OnRelease, if set, is called with the payload of every RELEASE from
	// another peer that carries one, before that release takes effect here:
	// the next holder has always handled every earlier holder's payload
	// that was sent to its current incarnation. (A release sent to an
	// incarnation of this peer that has since died is not replayed into
	// the new one; an application that must not miss it has to catch up
	// from its peers after a restart.) Payloads from one peer arrive in the
	// order its holders released. An error means the sender sent bad
	// input: the release is refused (it does not take effect here), and
	// that incarnation of the sender is quarantined (see Mutex.Quarantine).
	OnRelease func(from string, payload []byte) error
	// OnMessage, if set, is called with the payload of every message
	// another peer sent with Send to this incarnation, in the order of the
	// pair's stream: a message that peer sent after a RELEASE is handled
	// after that release's OnRelease. Messages sent to an earlier
	// incarnation of this peer are not delivered. An error means the
	// sender sent bad input: its incarnation is quarantined, as for
	// OnRelease.
	OnMessage func(from string, payload []byte) error
	// OnPeerUp, if set, is called when a new incarnation of peer comes up:
	// at first contact, after each restart, and after a quarantine once
	// another incarnation is accepted. By then the Mutex has forgotten the
	// earlier incarnation's request and greeted the new one, and it is
	// called before any message of the new incarnation is handled and
	// before the lock can be granted on what it says. Messages Sent to the
	// earlier incarnation may have been lost with it.
	OnPeerUp func(peer string)
	// OnPeerDown, if set, is called when the Transport loses its
	// connection to peer (PeerDown). It is news only: the peer may come
	// back as the same incarnation (no OnPeerUp then) or as a new one.
	OnPeerDown func(peer string)
	// StartClock, if set, is the least clock this peer starts with, at most
	// MaxClock. An application that keeps the clocks of its grants (the
	// ledger's blocks carry them) passes the last one, so that a restarted
	// peer's requests are stamped after it even when every peer restarted.
	StartClock uint64
	// Algorithm selects Lamport's algorithm (the default) or
	// Ricart-Agrawala; every peer of a group must run the same one.
	Algorithm Algorithm
	// Trace, if set, is called for every message sent or received and
	// every other change of the clock (see Event), in order, while the
	// Mutex holds its own lock: it must return at once and must not call
	// the Mutex's methods other than Stats and Quarantine.
	Trace func(Event)
	// Logger receives the Mutex's logs. Nil discards them.
	Logger *slog.Logger
}

// Event is one event at this peer, as reported to Config.Trace in the
// order they happen. Before and Clock are the Lamport clock just before and
// just after it, and every change of the clock is in some event, so that
// each event's Before is the previous event's Clock (the first event's is
// Config.StartClock):
//
//   - A message received (Sent false): Clock is the clock right after the
//     receive rule, max(Before, Message.Clock)+1 (saturating at MaxClock),
//     and before anything the message makes this peer send: those sends
//     follow as events of their own. PEERUP, which the local Transport
//     makes, and DATA, the application's, are no part of the rule: Clock
//     is Before.
//   - A message sent (Sent true): Clock is the clock right after the send,
//     which is Message.Clock, except for a REQUEST resent with its original
//     stamp to a restarted peer, and DATA, sent without a tick (Clock is
//     Before). A local step that moved the clock just before, such as a
//     release ahead of the REPLYs Ricart-Agrawala held back, is counted in
//     the first send after it.
//   - A local step that moved the clock and sent nothing (Message is the
//     zero Message): a release or withdrawal with no message to send
//     (under Ricart-Agrawala with no REPLY held back), or a request or
//     release in a group of one.
type Event struct {
	// Sent is true for a message sent, false for one received or a local
	// step.
	Sent    bool
	Message Message
	// Before and Clock are the local Lamport clock just before and just
	// after the event.
	Before, Clock uint64
}

// validate checks c and returns the sorted member list.
func (c Config) validate() ([]string, error) {
	ids, err := memberList(c.ID, c.Peers)
	if err != nil {
		return nil, err
	}
	if c.Algorithm != Lamport && c.Algorithm != RicartAgrawala {
		return nil, fmt.Errorf("%w: unknown algorithm %d", ErrConfig, c.Algorithm)
	}
	if c.StartClock > MaxClock {
		return nil, fmt.Errorf("%w: StartClock %d above MaxClock", ErrConfig, c.StartClock)
	}
	if c.Transport == nil {
		return nil, fmt.Errorf("%w: nil Transport", ErrConfig)
	}
	if got := c.Transport.ID(); got != c.ID {
		return nil, fmt.Errorf("%w: transport id %q, want %q", ErrConfig, got, c.ID)
	}
	if c.Transport.Incarnation() == 0 {
		return nil, fmt.Errorf("%w: transport incarnation 0", ErrConfig)
	}
	return ids, nil
}
