package lamportmutex

import "context"

// Transport carries messages between the peers of one Mutex. The algorithm
// is safe only if every Transport keeps the whole of this contract; the
// package transporttest checks it.
//
// Delivery:
//
//   - Start hands the Transport the function it delivers to. It is called
//     once, before Send, and delivery begins then; nothing is delivered
//     before it.
//   - deliver runs on the Transport's own goroutines. Calls that concern one
//     peer (its messages, its PeerUp and its PeerDown) never overlap and come
//     in the order of that peer's stream; calls for different peers may
//     overlap. deliver may block: only that peer's delivery waits for it.
//   - While it calls deliver, the Transport holds no lock that Send, Flush,
//     Quarantine or Close takes: the Mutex sends from inside deliver.
//   - No call of deliver runs or starts after Close returns.
//
// The streams:
//
//   - Reliable: every message Send accepted for a peer that stays up is
//     delivered to that peer, exactly once. A transport that cannot reach a
//     peer keeps the message and keeps trying; it never drops it in silence.
//   - Per-pair FIFO: messages from one sender to one receiver are delivered
//     in the order Send accepted them. There is no order across pairs.
//   - No duplicates and no forgeries: a message is delivered at most once,
//     and Message.From names the peer that really sent it.
//
// Incarnations: every run of a peer's process is an incarnation, named by a
// number (Incarnation, never 0) that grows across restarts.
//
//   - The Transport delivers PeerUp exactly once per incarnation of each
//     peer, before any message of that incarnation: at first contact and
//     after every restart. A reconnect of the same incarnation delivers no
//     PeerUp. PeerUp's Incarnation field names the incarnation that came up.
//   - Messages of an incarnation that has ended (a crashed sender's, still
//     in flight) may be delivered or dropped, but never after the PeerUp of
//     the sender's next incarnation.
//   - Messages addressed to an incarnation of the receiver that has ended
//     may be delivered to the next one or dropped: the Machine recognizes
//     and ignores them by their Incarnation field, which the Transport
//     carries unchanged.
//   - PeerDown says the Transport lost its connection to a peer (it closed,
//     broke, or the peer said goodbye). It is informational: it changes
//     nothing in the algorithm, and what is sent to the peer meanwhile is
//     held. It comes at most once after each PeerUp or reconnect.
//
// Sending:
//
//   - Send never blocks. It queues its messages and returns; each counts
//     toward its peer's queue until the peer's transport acknowledges it,
//     also while the peer is down. Send keeps neither msgs nor a message's
//     Payload: the caller may reuse both once Send returns (the Mutex
//     reuses its slice for the next call).
//   - One call of Send carries messages for one peer: the Mutex hands over
//     in one call what one step sends that peer (a RELEASE and the next
//     REQUEST, say). Send queues all of them, in order, or none: it refuses
//     the whole call if it refuses one message, or if the messages name
//     different peers. The Transport sends what one call queued together
//     where its medium allows (TCP: in one write). A call with no message
//     does nothing.
//   - The queue per peer is bounded in bytes. Send refuses a message that
//     would take it past the bound, with an error that wraps ErrQueueFull.
//     A message of Kind Data is refused already when it would take the
//     queue past half the bound, so that the algorithm's own messages, a
//     few per entry, always have room beside the application's.
//   - Send also refuses (with an error) a message for an unknown peer or
//     for this peer, one whose From is not ID, one whose Payload exceeds
//     MaxPayload, and every message after Close (wrapping ErrClosed).
//   - Flush waits until every message Send accepted before the call has
//     been acknowledged by its receiver's Transport, or can no longer be
//     (its receiver's incarnation ended, or was quarantined). It returns
//     ctx's error if ctx ends first (which is how it ends for a receiver
//     that is down, unless the transport knows its incarnation ended), and
//     ErrClosed after Close.
//
// Quarantine: the Mutex calls it when an incarnation of a peer sent input
// it or the application refused; after it, nothing more from that
// incarnation is delivered (see the method).
//
// Close flushes what was sent, within ctx (a Transport that has a goodbye
// says it then), and stops every goroutine the Transport started. A second
// Close returns nil.
//
// The transport package provides two implementations: an in-process network
// of channels, and TCP.
type Transport interface {
	// ID returns the local peer's id.
	ID() string
	// Incarnation returns the local peer's incarnation, never 0: the
	// number its peers see in their PeerUp for it.
	Incarnation() uint64
	// Start begins delivery to deliver. It returns an error if called
	// twice or after Close.
	Start(deliver func(Message)) error
	// Send queues msgs, all for one peer, for delivery in order; it never
	// blocks, and keeps neither msgs nor their payloads.
	Send(msgs ...Message) error
	// Flush waits until what was sent before it is acknowledged.
	Flush(ctx context.Context) error
	// MaxPayload returns the largest Message.Payload Send accepts, in
	// bytes.
	MaxPayload() int
	// Quarantine ends the session with incarnation inc of peer, because
	// that incarnation sent input the application or the Mutex refused
	// (cause says what). The transport drops what it still holds from that
	// incarnation and what it holds for it, closes its connections to it,
	// and refuses that incarnation from then on. Whether it also refuses
	// earlier ones is the transport's to decide: one whose handshakes are
	// authenticated may, since only the peer itself can present a later
	// incarnation; one whose handshakes are not must refuse only inc, or an
	// impostor's forged incarnation, once quarantined, would keep the real
	// peer out. Any other incarnation of peer it accepts comes up as a
	// restart (PeerUp first); the Mutex treats a PeerUp of any incarnation
	// other than inc as one. Quarantine never blocks, and is a no-op for an
	// unknown peer or after Close.
	Quarantine(peer string, inc uint64, cause error)
	// Close flushes within ctx, then shuts the transport down.
	Close(ctx context.Context) error
}
