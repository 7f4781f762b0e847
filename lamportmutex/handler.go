package lamportmutex

// Handler is the application's side of a Mutex, given as Config.Handler.
//
// The Mutex calls its methods one at a time, never two at once, on the
// Transport's goroutines and without holding its own lock: a slow method
// delays the delivery of what peers send, never Lock, Unlock or Send. A
// method must not call Lock, TryLock or Close (they may wait for messages
// that only its return lets in); Unlock, Send, Quarantine, State, Stats
// and Err are fine. Delivery begins inside New, so a method may run before
// the application has the *Mutex (see New). After Close returns, none runs.
//
// An error from HandleRelease or HandleMessage means the sender sent bad
// input: that incarnation of the sender is quarantined (see
// Mutex.Quarantine), and counted in Stats.HandlerErrors.
type Handler interface {
	// HandleRelease is called with the payload of every RELEASE from
	// another peer that carries one, before that release takes effect
	// here: the next holder has always handled every earlier holder's
	// payload that was sent to its current incarnation. (A release sent to
	// an incarnation of this peer that has since died is not replayed into
	// the new one; an application that must not miss it has to catch up
	// from its peers after a restart.) Payloads from one peer arrive in
	// the order its holders released. An error refuses the release: it
	// does not take effect here.
	HandleRelease(from string, payload []byte) error
	// HandleMessage is called with the payload of every message another
	// peer sent with Mutex.Send to this incarnation, in the order of the
	// pair's stream: a message that peer sent after a RELEASE is handled
	// after that release's HandleRelease. Messages sent to an earlier
	// incarnation of this peer are not delivered.
	HandleMessage(from string, payload []byte) error
	// HandlePeerUp is called when a new incarnation of peer comes up: at
	// first contact, after each restart, and after a quarantine once
	// another incarnation is accepted. By then the Mutex has forgotten the
	// earlier incarnation's request and greeted the new one, and it is
	// called before any message of the new incarnation is handled and
	// before the lock can be granted on what it says. Messages sent to the
	// earlier incarnation may have been lost with it.
	HandlePeerUp(peer string)
	// HandlePeerDown is called when the Transport loses its connection to
	// peer (PeerDown). It is news only: the peer may come back as the same
	// incarnation (no HandlePeerUp then) or as a new one.
	HandlePeerDown(peer string)
}

// NopHandler implements Handler doing nothing: it accepts every payload.
// Embed it to implement only some of Handler's methods.
type NopHandler struct{}

// HandleRelease accepts the payload.
func (NopHandler) HandleRelease(string, []byte) error { return nil }

// HandleMessage accepts the payload.
func (NopHandler) HandleMessage(string, []byte) error { return nil }

// HandlePeerUp does nothing.
func (NopHandler) HandlePeerUp(string) {}

// HandlePeerDown does nothing.
func (NopHandler) HandlePeerDown(string) {}
