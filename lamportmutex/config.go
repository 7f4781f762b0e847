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
	// Handler is the application's side of the Mutex: it handles the
	// payloads of peers' releases and messages, and hears of peers coming
	// up and going down (see Handler). Nil means no application: payloads
	// are accepted and dropped.
	Handler Handler
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
	// the Mutex's methods other than Stats and Quarantine. It runs on
	// whichever goroutine makes the step (a caller of Lock or Unlock, the
	// Transport's delivery, the timer that sends a held RELEASE), so it
	// must not wait for a lock that code calling the Mutex may hold.
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
//     stamp to a restarted peer, DATA, sent without a tick, and a RELEASE
//     held back (see Mutex.Unlock) that a later step sends, whose tick was
//     reported when it was held (Clock is Before for these three).
//     A local step that moved the clock just before, such as a release
//     ahead of the REPLYs Ricart-Agrawala held back, is counted in the first
//     send after it.
//   - A local step that moved the clock and sent nothing (Message is the
//     zero Message): a release or withdrawal with no message to send now
//     (under Ricart-Agrawala with no REPLY held back, or under Lamport's a
//     release whose every RELEASE is held back), or a request or release in
//     a group of one.
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
