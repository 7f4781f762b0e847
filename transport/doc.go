// Package transport carries lamportmutex messages between peers. It has two
// implementations of lamportmutex.Transport, and both keep the whole of that
// interface's contract: reliable, per-pair FIFO, no duplicates, From
// checked, PeerUp before any message of a new incarnation, Send bounded by
// its ctx, Close stopping every goroutine.
//
// Both encode every message with the same codec: a msgpack array
// [kind, from, to, clock, payload, incarnation]. The encoder and decoder are
// written by hand for this one shape (a test checks that they produce the
// very bytes github.com/hashicorp/go-msgpack/v2 does, and the fuzz targets
// compare the two); the decoder accepts only the shortest form of every
// integer and length and checks each length against the bytes present
// before allocating. A PeerUp is never encoded; a transport synthesizes it,
// with the incarnation of the peer that came up.
//
// # Chan: the in-process network
//
// NewChanNetwork builds a network of N peers in one process; Endpoint(id)
// returns a peer's transport. It is the transport for tests, simulations and
// the in-process example.
//
//   - Every message is encoded and decoded on Send, so the receiver gets a
//     copy exactly as it would arrive over the wire, and a message that
//     would not survive the wire fails in memory too.
//   - Each ordered pair of peers has its own FIFO link whose goroutine
//     calls the receiver's deliver function, holding no lock: a receiver's
//     deliveries from one sender never overlap and keep their order, and a
//     deliver function may Send. Send never runs deliver itself.
//   - Send never blocks. A link holds at most ChanOptions.QueueBytes
//     encoded bytes (default DefaultChanQueueBytes, 16 MiB) of messages
//     not yet delivered, held ones included; Send refuses a message past
//     that, and a Data message past half of it, with an error wrapping
//     lamportmutex.ErrQueueFull. Flush waits until what was sent has been
//     delivered, or can no longer be.
//   - Once an endpoint is started, its first delivery from each other peer
//     is that peer's PeerUp. A cut of a link (Partition, Disconnect, a
//     quarantine) or a sender that closes gives the receiver one PeerDown.
//
// Faults and timing, all seeded or explicit so that runs are repeatable:
//
//   - ChanOptions.MaxDelay (random, from ChanOptions.Seed, one generator per
//     link) or ChanOptions.Delay (a function) delays each message; a link
//     never reorders, so a message waits for its own delay and for the
//     message before it.
//   - Partition(a, b) holds the two links between a and b; Disconnect(id)
//     holds every link of id. Held messages are kept and delivered in order
//     by Heal or Reconnect; nothing is lost, as the contract requires.
//   - Restart(id) simulates a crash and restart. Incarnations count from 1
//     and grow by one with each Restart. The old endpoint is closed.
//     Messages it sent that are still on their links are dropped (those
//     already in a receiver's inbox count as delivered and are kept).
//     Messages addressed to it and not yet received are dropped, never
//     delivered to the new incarnation. The new endpoint receives PeerUp
//     from every other peer first, and every other peer that is up receives
//     PeerUp(id) before any message of the new incarnation. That PeerUp
//     travels on the link like a message, so a fault holds it too.
//   - ChanEndpoint.Close takes one peer down for good (until Restart): it
//     flushes within its ctx; messages it already sent are still
//     delivered; messages sent to it are held, and dropped by a later
//     Restart.
//   - ChanOptions.OnSend and ChanOptions.OnDeliver observe every message,
//     for tracing and for tests that count messages.
//   - ChanEndpoint.Quarantine(peer, inc, cause) cuts that incarnation of
//     peer off from the endpoint until peer restarts: what it sent and the
//     endpoint has not been handed is dropped, what it sends later is
//     dropped, what the endpoint held for it is dropped, and what the
//     endpoint sends it later is held (a Restart drops it).
//
// Closing the network closes every endpoint, drops what is undelivered and
// stops every goroutine.
//
// # TCP
//
// The TCP transport, for peers in different processes or machines, lives in
// the tcp*.go files of this package (with its framing and handshake): one
// ordered stream per pair of peers, length-prefixed msgpack frames, a
// handshake naming the sender and the cluster, and sequence numbers and
// acknowledgements that keep delivery exactly-once and in order across
// reconnects, and a GOODBYE frame on Close so that a clean exit is logged
// by the peers as a departure, not a fault. Its own documentation (on the
// TCP type) describes the wire format.
//
// Trust. Without TLS a peer's id is a claim anyone who can reach the port
// and knows the cluster can make: use it on loopback or a trusted network.
// With TCPConfig.TLS every connection is mutual TLS and a peer is accepted
// only with a certificate, from the configured roots, that names exactly one
// member id (as its subject CommonName or a DNS SAN; URI SANs are not
// consulted), the id it claims. To bind identities with your own PKI, give
// each member a certificate naming its id under a CA (or name-constrained
// intermediate) that names member ids on no other certificate, and put that
// CA in RootCAs and ClientCAs. Whatever the mode, a handshake is checked in
// full before anything it announces is stored; refusals tell the dialer a
// generic reason only; one session per member is live at a time; at most
// 32 connections may wait for their hello, and when they do, a new one
// evicts one of them, so that idle connections cannot keep peers out; and
// the send queue is bounded in messages and in bytes. Only an authenticated
// (TLS) handshake can make a lower incarnation stale: without TLS an
// incarnation is a claim like the id, and a member with no live session is
// accepted with whatever plausible incarnation it presents (see
// Incarnations in the TCP wire format). Quarantine cuts one incarnation of
// a peer off in both directions until that peer restarts.
//
// # Errors
//
// ErrClosed, ErrUnknownPeer, ErrWrongSender and ErrUnsendable are returned
// (wrapped) by Send and the network's methods; ErrMalformed reports bytes
// that do not decode to a message.
package transport
