package lamportmutex

import "context"

// Transport carries messages between the peers of one Mutex. The algorithm
// is safe only if every Transport keeps the whole of this contract:
//
//   - Reliable: every message passed to Send for a peer that stays up is
//     delivered to that peer, exactly once. A transport that cannot reach a
//     peer keeps the message and keeps trying; it never drops it in silence.
//   - Per-pair FIFO: messages from one sender to one receiver are delivered
//     in the order Send was called. There is no order across pairs.
//   - No duplicates and no forgeries: a message is delivered at most once,
//     and Message.From names the peer that really sent it.
//   - Incarnations: every run of a peer's process is an incarnation,
//     named by a number that grows across restarts (Incarnation). When a
//     peer restarts, its earlier incarnation's
//     undelivered messages are dropped, never replayed into the new one, and
//     the transport delivers a PeerUp message from that peer before any
//     message of the new incarnation. It also delivers PeerUp for every peer
//     at first contact; PeerUp's Incarnation field names the incarnation
//     that came up. Messages sent to a peer while it is down are held; those
//     addressed to an incarnation that has since died may be delivered to
//     the next one or dropped (the Machine recognizes and ignores them by
//     their Incarnation field, which the transport carries unchanged).
//   - Send returns once the message is queued for delivery (not when it is
//     delivered). It blocks only while the queue for that peer is full and
//     never past ctx; it returns an error for an unknown peer, for a message
//     whose From is not ID, and after Close.
//   - Receive returns one channel for the transport's whole life; it is
//     closed after Close. Messages are delivered on it in the order above.
//   - Close stops every goroutine the transport started and is safe to call
//     more than once.
//   - Quarantine: the Mutex calls it when an incarnation of a peer sent
//     input it or the application refused (see Quarantine below); after
//     it, nothing more from that incarnation is delivered.
//
// The transport package provides two implementations: an in-process network
// of channels, and TCP.
type Transport interface {
	// ID returns the local peer's id.
	ID() string
	// Incarnation returns the local peer's incarnation: the number its
	// peers see in their PeerUp for it.
	Incarnation() uint64
	// Send queues msg for delivery to msg.To.
	Send(ctx context.Context, msg Message) error
	// Receive returns the channel of inbound messages.
	Receive() <-chan Message
	// Quarantine ends the session with incarnation inc of peer, because
	// that incarnation sent input the application or the Mutex refused
	// (cause says what). The transport drops what it still holds from that
	// incarnation, closes its connections to it, and refuses that
	// incarnation from then on. Whether it also refuses earlier ones is
	// the transport's to decide: one whose handshakes are authenticated
	// may, since only the peer itself can present a later incarnation; one
	// whose handshakes are not must refuse only inc, or an impostor's
	// forged incarnation, once quarantined, would keep the real peer out.
	// Any other incarnation of peer it accepts comes up as a restart
	// (PeerUp first); the Mutex treats a PeerUp of any incarnation other
	// than inc as one. Quarantine never blocks, and is a no-op for an
	// unknown peer or after Close.
	Quarantine(peer string, inc uint64, cause error)
	// Close shuts the transport down.
	Close() error
}

// PayloadLimiter is implemented by a Transport that cannot carry payloads
// above some size. Mutex.Unlock refuses a larger payload with
// ErrPayloadTooLarge, while the lock is still held, instead of losing the
// release.
type PayloadLimiter interface {
	// MaxPayload returns the largest payload, in bytes, a RELEASE may carry.
	MaxPayload() int
}
