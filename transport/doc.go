// Package transport carries lamportmutex messages between peers. It has two
// implementations of lamportmutex.Transport, and both keep the whole of that
// interface's contract: reliable, per-pair FIFO, no duplicates, From
// checked, PeerUp before any message of a new incarnation, deliver called
// on the transport's goroutines, Send never blocking and bounded, Close
// stopping every goroutine.
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
// two-way connection per pair of peers, carrying one ordered stream each
// way, so that a REPLY and the acknowledgements ride back on the connection
// that brought the REQUEST; length-prefixed msgpack frames; a handshake
// naming the sender and the cluster; sequence numbers and acknowledgements
// that keep delivery exactly-once and in order across reconnects; and a
// GOODBYE frame on Close so that a clean exit is logged by the peers as a
// departure, not a fault. The reader of a connection calls deliver itself;
// Send queues, and writes at once when it can without blocking; whoever
// writes drains everything queued for the peer, with an ACK in front, into
// one write; what is held per peer is bounded in bytes
// (TCPConfig.QueueBytes).
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
// what is held for a peer is bounded in bytes. Only an authenticated
// (TLS) handshake can make a lower incarnation stale: without TLS an
// incarnation is a claim like the id, and a member with no live session is
// accepted with whatever plausible incarnation it presents (see
// Incarnations below). Quarantine cuts one incarnation of a peer off in
// both directions until that peer restarts.
//
// # TCP wire format
//
// This is the one description of the protocol, version 4 (protocolVersion).
// Every pair of peers has one connection, dialed by the peer whose id is
// the lower (as byte strings): it carries the messages of both, each
// direction one ordered stream with its own sequence numbers. There is
// never more than one live connection per pair.
//
// All integers are big-endian. A frame is a uint32 length followed by that
// many bytes (the body). A receiver refuses a length above its limit
// (MaxFrameSize, 8 KiB during the handshake) before allocating anything, and
// a length of zero.
//
// Handshake. With TLS, the TLS handshake comes first and everything below
// travels inside it. The dialer sends the preamble "LLTP" + uint16 version
// (4), then one frame holding the msgpack array [from, to, cluster,
// incarnation] (str, str, str, uint). The acceptor answers with its own
// preamble and one frame holding [from, incarnation, resume, refusal] (str,
// uint, uint, str), and sends nothing before the dialer's frame is checked.
// The dialer then sends RESUME (below), and the handshake is done.
//
// The acceptor accepts the hello only if all of these hold, and only then
// stores the incarnation: the same version; from is a configured peer and
// not itself; to is its id; the same cluster; an incarnation that is not 0,
// not more than maxIncarnationLead (24 hours) ahead of its clock, not
// quarantined and, with TLS, not older than one already accepted from that
// id (see Incarnations below); with TLS, a certificate naming exactly one
// member, from (see TCPConfig.TLS); no live session of that id with another
// incarnation (see below); and nothing sent after the hello before the
// welcome. Otherwise it logs the cause with the values and answers with a
// welcome whose only field set is refusal, one of "protocol version
// mismatch", "duplicate session exists" or "handshake not accepted" (an
// unauthenticated dialer learns nothing about the cluster), and closes.
// Bytes without the magic are closed on without answer.
//
// Handshake floods. The first bytes of a connection (the preamble, or with
// TLS a record header) must arrive within preambleTimeout (1 second), the
// whole handshake within HandshakeTimeout. At most maxPendingHandshakes (32)
// accepted connections wait for their hello to arrive and pass its checks:
// one more evicts (closes) the oldest of them from the remote IP address
// holding the most, so idle connections cannot keep a peer out. A stream's 64 KiB
// buffers are allocated only after its handshake.
//
// On success the welcome carries the acceptor's id and incarnation, and
// resume, the last sequence number it delivered from this dialer's
// incarnation (0 for an incarnation it has not seen). The dialer checks the
// welcome the same way: from is the peer it dialed, the incarnation is
// plausible, not quarantined and, with TLS, not older than one seen; and
// nothing follows the welcome. It answers with
//   - RESUME (5): uint64 seq, the last sequence number it delivered from the
//     acceptor's incarnation (0 for an incarnation it has not seen),
//
// and the acceptor, which sends nothing before it, resends from seq+1.
//
// Kicks. The higher id of a pair never dials for a session, so that a peer
// in backoff learns at once that it restarted, it kicks: it dials the lower
// id and sends its hello, at start and then, while no connection is up,
// with backoff. The lower id checks that hello exactly as any other, and if
// it passes, answers with a welcome whose refusal is "reversed: the lower
// id dials" (with its id and incarnation) and closes; then, if it has no
// connection to the kicker, or one that reaches another incarnation of it
// (which is gone, and is closed), it dials at once instead of finishing
// its backoff. A kick stores nothing, and costs at most one dial.
//
// Incarnations. With TLS a handshake is authenticated, so an incarnation
// older than the one stored for that member is refused as stale (only a
// member's own key can raise what is stored, and only that member is hurt).
// Without TLS no handshake is authenticated: anyone who knows the cluster
// can present a member's id with a high incarnation while the member is
// down. So an incarnation, higher or lower, that differs from the stored one
// is taken as a restart of that member (PeerUp first, sequence numbers from
// 1), on either side of the handshake, provided the member has no live
// session with another incarnation; a forged incarnation thus never locks
// the real member out. For the same reason a quarantine refuses, without
// TLS, only the quarantined incarnation itself (the last one quarantined):
// a forged incarnation, once quarantined, cannot keep out a real one below
// it. With TLS it refuses that incarnation and older ones.
//
// One session per member: a hello (or a kick) from an id whose current
// session heard from it within two HeartbeatIntervals (a live peer sends
// at least a heartbeat that often) is refused as a duplicate if its
// incarnation differs, and both sides log it, naming the id and both
// addresses. With the same incarnation the new connection replaces the old
// one: that is the dialer reconnecting after a connection it saw fail,
// which the acceptor may not have noticed yet.
//
// Stream. Then both ends send frames whose body starts with a type byte:
//   - DATA (1): uint64 seq, then the message as a msgpack array
//     [kind, from, to, clock, payload, incarnation] (uint, str, str, uint,
//     bin or nil, uint), every integer and length in its shortest form (a
//     receiver refuses other forms).
//   - ACK (2): uint64 seq: every message up to seq that the receiver of
//     this ACK sent was delivered (deliver returned for it). ACKs are
//     cumulative and ride in front of the DATA the acknowledging end writes
//     anyway, in the same write; one goes out on its own only after 64
//     deliveries, in answer to a PING, or about 5 ms after the first
//     delivery not yet acknowledged. The last one is repeated every
//     HeartbeatInterval as the heartbeat. ACKs only free the resend queue:
//     no message waits for one.
//   - PING (3): nothing else: asks for an ACK at once. Sent after a batch of
//     DATA whenever what is held for the peer has reached a quarter of
//     QueueBytes.
//   - GOODBYE (4): nothing else; see Goodbye below.
//
// Sequence numbers count from 1 per direction and pair of incarnations
// (sender's, receiver's). After a reconnect each end resends from what the
// other said it delivered (resume in the welcome, RESUME) plus one; a
// receiver drops a seq it already delivered and closes on a gap. When the
// other end's incarnation changes, a sender renumbers what it still holds
// from 1 (messages for a dead incarnation go to the next one, as the
// Transport contract allows); a receiver resets its state for that peer and
// delivers PeerUp before the new incarnation's first message; nothing of
// the old incarnation is delivered after that.
//
// Goodbye. Close sends GOODBYE on every established connection that is
// healthy, as the last frame it writes there, after everything it still
// has queued and a last ACK of what it delivered (it delivers nothing
// more). The sender then reads, and drops, what arrives until the peer
// closes the connection; Close waits at most goodbyeWait (1 second) for all
// its connections. A receiver of GOODBYE closes the connection and logs the
// departure at Info, not as a fault. A GOODBYE is a claim, not authority:
// it changes no sequence number, incarnation, resume point or quarantine,
// so the same incarnation reconnecting resumes as after a dropped
// connection, and a new one is a restart (PeerUp first).
//
// Anything else (unknown type, wrong length, malformed msgpack, a gap, a
// forged From or To, an ACK of something never sent, a RESUME after the
// handshake, silence past IdleTimeout, a peer not reading for
// WriteTimeout) closes that connection with a logged error; the dialer
// reconnects with backoff.
//
// # Errors
//
// ErrClosed, ErrUnknownPeer, ErrWrongSender, ErrUnsendable and
// ErrMixedPeers are returned (wrapped) by Send and the network's methods; ErrMalformed reports bytes
// that do not decode to a message. The TCP transport's other sentinels
// (handshake refusals, ErrProtocol, ErrSlowPeer, ErrIdle, ...) reach only
// its log records, as the "err" attribute; they are exported so that a log
// handler can tell them apart with errors.Is, as examples/threeclients does.
//
// The codec and the frame and handshake parsers are not public API: they
// are unexported, and only the wire format above is a contract.
package transport
