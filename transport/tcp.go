package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Defaults of TCPConfig.
const (
	DefaultMaxFrameSize      = 4 << 20
	DefaultDialTimeout       = 5 * time.Second
	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultIdleTimeout       = 15 * time.Second
	DefaultBackoffMin        = 50 * time.Millisecond
	DefaultBackoffMax        = 5 * time.Second
	DefaultSendQueue         = 1024
	DefaultSendQueueBytes    = 16 << 20
	DefaultReceiveBuffer     = 256
)

// TCPConfig configures a TCP transport. Zero durations and sizes take the
// Default* values.
type TCPConfig struct {
	// ID is the local peer's id. Required.
	ID string
	// ListenAddr is the address to listen on, e.g. "127.0.0.1:7001" or
	// "127.0.0.1:0" for a free port (see TCP.Addr). Ignored if Listener is
	// set.
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr; the
	// transport owns it and closes it on Close. Tests start N transports on
	// free ports by creating the N listeners first, so that every Peers
	// map can be complete.
	Listener net.Listener
	// Peers maps every other peer's id to its address. An entry for ID
	// itself is ignored, so the same map can serve every member.
	Peers map[string]string
	// Cluster is an identity every peer must share (the ledger passes its
	// genesis hash); a handshake with another value is refused.
	Cluster string
	// TLS, if set, makes every connection mutual TLS; without it a peer's
	// id is only a claim, fit for loopback or a network that is trusted. It
	// must hold the local peer's certificate and the roots to verify peers
	// (RootCAs and ClientCAs). The transport clones it, requires and
	// verifies client certificates (ClientAuth extended key usage, and
	// ServerAuth for the certificate of a dialed peer), and binds every
	// certificate to a member: its names are the subject CommonName and its
	// DNS SANs (URI, IP and email SANs are not consulted), and it must name
	// exactly one member id (ID or a key of Peers), the one the peer claims.
	// A certificate naming several members, or none, is refused; names that
	// are not member ids, such as a host name, are allowed. ServerName is
	// ignored: a dialed peer's certificate must name the peer id instead.
	//
	// With your own PKI: issue each member one certificate whose CommonName
	// (or one DNS SAN) is its member id, under a CA that issues no other
	// certificate naming a member id (a dedicated CA, or an intermediate
	// constrained by name), and put that CA in RootCAs and ClientCAs.
	// Any certificate that CA issues for an id is that member.
	TLS *tls.Config
	// MaxFrameSize bounds a frame's length (checked before allocating) and
	// thus a message's encoded size.
	MaxFrameSize int
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the TLS and protocol handshakes. An accepted
	// connection's first bytes must also arrive within one second.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds a blocked write: a peer that does not read for
	// that long (up to an eighth more) has its connection closed (a slow
	// reader). Send itself never waits on the socket.
	WriteTimeout time.Duration
	// HeartbeatInterval is how often an idle stream sends a PING (dialer)
	// or a repeated ACK (acceptor).
	HeartbeatInterval time.Duration
	// IdleTimeout closes a connection on which nothing arrived for that
	// long (a half-open connection). It must exceed HeartbeatInterval.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay, which doubles
	// after each failed attempt, with jitter, and resets after a
	// successful handshake. When the peer dials in (it restarted, or is
	// reachable again) while our stream to it is down, we dial it at once.
	BackoffMin, BackoffMax time.Duration
	// SendQueue bounds the messages queued or unacknowledged per peer, and
	// SendQueueBytes their encoded size in bytes; Send blocks, up to its
	// ctx, while either is reached. A message is admitted whenever
	// nothing is queued for the peer, so one message larger than
	// SendQueueBytes (but within MaxFrameSize) still goes through.
	SendQueue      int
	SendQueueBytes int
	// ReceiveBuffer is the capacity of the Receive channel.
	ReceiveBuffer int
	// Logger receives connection events; nil discards them. Faults (a
	// broken connection, a refusal, a protocol error) are logged at Warn;
	// streams coming up, a peer's restart or departure (GOODBYE) and the
	// first failure to reach a peer at Info; the rest (each further dial
	// attempt, a connection closed before its first byte, our own Close)
	// at Debug. Peer-supplied strings are escaped and cut short.
	Logger *slog.Logger
	// Incarnation identifies this run of the process; it must grow across
	// restarts of the same id (with TLS, peers refuse an older one than
	// they have seen), and peers refuse one more than 24 hours ahead of
	// their clock (in nanoseconds since the Unix epoch). Zero means the
	// current time in nanoseconds.
	Incarnation uint64

	// Test hooks.
	version         uint16                          // protocol version to speak; 0 means protocolVersion
	preambleTimeout time.Duration                   // 0 means preambleTimeout
	onConnError     func(peer string, err error)    // called for every connection error
	onEvent         func(peer string, event string) // called on "connected"/"accepted"
}

// TCP is a lamportmutex.Transport over TCP, optionally with mutual TLS.
//
// Every peer dials every other peer, so each ordered pair (A, B) has its own
// connection, dialed by A: it carries A's messages to B and B's
// acknowledgements back. There is never more than one live stream per pair.
//
// # Wire format, version 3
//
// All integers are big-endian. A frame is a uint32 length followed by that
// many bytes (the body). A receiver refuses a length above its limit
// (MaxFrameSize, 8 KiB during the handshake) before allocating anything, and
// a length of zero.
//
// Handshake. With TLS, the TLS handshake comes first and everything below
// travels inside it. The dialer sends the preamble "LLTP" + uint16 version
// (3), then one frame holding the msgpack array [from, to, cluster,
// incarnation] (str, str, str, uint). The acceptor answers with its own
// preamble and one frame holding [from, incarnation, resume, refusal] (str,
// uint, uint, str), and sends nothing before the dialer's frame is checked.
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
// plausible, not quarantined and, with TLS, not older than one seen.
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
// One session per member: a hello from an id whose current session heard
// from its dialer within two HeartbeatIntervals (a live dialer pings at
// least that often) is refused as a duplicate if its incarnation differs,
// and both sides log it, naming the id and both addresses. With the same
// incarnation the new connection replaces the old one: that is the dialer
// reconnecting after a connection it saw fail, which the acceptor may not
// have noticed yet.
//
// Stream. The dialer then sends frames whose body starts with a type byte:
//   - DATA (1): uint64 seq, then the message as a msgpack array
//     [kind, from, to, clock, payload, incarnation] (uint, str, str, uint,
//     bin or nil, uint), every integer and length in its shortest form (a
//     receiver refuses other forms).
//   - PING (3): nothing else. Sent every HeartbeatInterval while idle, and
//     after a batch of DATA whenever half of SendQueue is written but not
//     acknowledged: a PING asks for an ACK at once.
//   - GOODBYE (4): nothing else; see Goodbye below.
//
// The acceptor sends:
//   - ACK (2): uint64 seq: every message up to seq was delivered. ACKs are
//     cumulative and coalesced: one goes out after every 64 deliveries, in
//     answer to a PING, else about 5 ms after the first delivery not yet
//     acknowledged; and the last one is repeated every HeartbeatInterval.
//     ACKs only free the dialer's resend queue: no message waits for one.
//   - GOODBYE (4): nothing else; see Goodbye below.
//
// Sequence numbers count from 1 per pair of incarnations (sender's, receiver's).
// After a reconnect the dialer resends from resume+1; the receiver drops a seq
// it already delivered and closes on a gap. When the acceptor's incarnation
// changes, the dialer renumbers what it still holds from 1 (messages for a
// dead incarnation go to the next one, as the Transport contract allows).
// When the dialer's incarnation changes, the acceptor resets its state for
// that peer and delivers PeerUp before the new incarnation's first message;
// nothing of the old incarnation is delivered after that.
//
// Goodbye. Close sends GOODBYE on every established connection that is
// healthy, as the last frame it writes there: the dialer after everything
// it still has queued, the acceptor after a last ACK of what it delivered
// (it delivers nothing more). The sender then reads, and drops, what
// arrives until the peer closes the connection; Close waits at most
// goodbyeWait (1 second) for all its connections. A receiver of GOODBYE
// closes the connection and logs the departure at Info, not as a fault.
// A GOODBYE is a claim, not authority: it changes no sequence number,
// incarnation, resume point or quarantine, so the same incarnation
// reconnecting resumes as after a dropped connection, and a new one is a
// restart (PeerUp first).
//
// Restarts. A peer that dials in, with a handshake we accept, is up: if our
// stream to it is down, or reaches another incarnation of it (which is
// gone), we dial it at once instead of finishing the backoff.
//
// Anything else (unknown type, wrong length, malformed msgpack, a gap, a
// forged From or To, an ACK of something never sent, silence past
// IdleTimeout, a peer not reading for WriteTimeout) closes that connection
// with a logged error; the dialer reconnects with backoff.
type TCP struct {
	cfg       TCPConfig
	id        string
	inc       uint64
	version   uint16
	ln        net.Listener
	log       *slog.Logger
	serverTLS *tls.Config
	peers     map[string]*peer
	members   map[string]bool // the peers' ids and ours
	recv      chan lamportmutex.Message
	shaking   atomic.Int32 // goroutines running an accepted connection's handshake
	pending   pendingSet   // accepted connections in their handshake
	capWarned atomic.Int64 // monoNow of the last Warn about the handshake caps

	ctx    context.Context // cancelled by Close; bounds dials and handshakes
	cancel context.CancelFunc
	done   <-chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	closeOnce sync.Once
	started   atomic.Bool
	pumped    chan struct{} // closed when the delivery goroutine returns
	closeErr  error
}

// peer is everything the transport knows about one remote peer.
type peer struct {
	id   string
	addr string
	out  outPeer
	in   inPeer

	mu       sync.Mutex
	inc      uint64 // newest incarnation seen in either handshake (without TLS: the latest)
	restarts uint64
	left     bool   // leftInc said goodbye, and no handshake succeeded since
	leftInc  uint64 // the incarnation that said goodbye last
}

// noteIncarnation records the incarnation of a successful handshake: the
// newest one seen if authenticated, else the latest (without TLS an older
// incarnation may be a restart after a forged newer one). It returns the
// incarnation stored before, if this one replaced it.
func (p *peer) noteIncarnation(inc uint64, authenticated bool) (replaced uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.left = false
	if inc > p.inc || (!authenticated && inc != p.inc) {
		replaced = p.inc
		if p.inc != 0 {
			p.restarts++
		}
		p.inc = inc
	}
	return replaced
}

// noteIncarnation records the incarnation of p's successful handshake, and
// logs a restart.
func (t *TCP) noteIncarnation(p *peer, inc uint64) {
	if old := p.noteIncarnation(inc, t.authenticated()); old != 0 {
		t.log.Info("transport: peer restarted", "peer", printable(p.id), "incarnation", inc, "previous", old)
	}
}

// errGoodbye ends a stream whose peer sent GOODBYE.
var errGoodbye = errors.New("peer said goodbye")

// peerLeft logs that incarnation inc of p said goodbye: at Info for the
// first of its streams, at Debug for the other. A goodbye is the peer's
// claim, and it changes nothing the protocol relies on: sequence numbers,
// what may be resumed, incarnations and quarantines stay as they are, so
// the same incarnation reconnecting resumes where it stopped (no message
// lost or replayed), and a new one comes up with PeerUp first. It only
// makes the end of the stream no fault, marks the peer Left in Status, and
// stops the dialer logging that p cannot be reached.
func (t *TCP) peerLeft(p *peer, dir string, inc uint64) {
	p.mu.Lock()
	first := !p.left || p.leftInc != inc
	p.left, p.leftInc = true, inc
	p.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelInfo
	}
	t.log.Log(context.Background(), level, "transport: peer left", "peer", printable(p.id), "dir", dir, "incarnation", inc)
	t.event(p.id, "goodbye")
}

// NewTCP validates cfg, starts listening and starts connecting to every
// peer. Close releases everything.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if cfg.ID == "" {
		return nil, errors.New("transport: TCPConfig.ID is empty")
	}
	setDefault(&cfg.MaxFrameSize, DefaultMaxFrameSize)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.BackoffMin, DefaultBackoffMin)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.SendQueue, DefaultSendQueue)
	setDefault(&cfg.SendQueueBytes, DefaultSendQueueBytes)
	setDefault(&cfg.ReceiveBuffer, DefaultReceiveBuffer)
	setDefault(&cfg.version, protocolVersion)
	setDefault(&cfg.preambleTimeout, preambleTimeout)
	if cfg.IdleTimeout <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("transport: IdleTimeout %v must exceed HeartbeatInterval %v", cfg.IdleTimeout, cfg.HeartbeatInterval)
	}
	if cfg.MaxFrameSize < seqFrameSize+1 {
		return nil, fmt.Errorf("transport: MaxFrameSize %d too small", cfg.MaxFrameSize)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = max(uint64(time.Now().UnixNano()), 1)
	}
	t := &TCP{
		cfg:     cfg,
		id:      cfg.ID,
		inc:     cfg.Incarnation,
		version: cfg.version,
		log:     cfg.Logger,
		peers:   make(map[string]*peer, len(cfg.Peers)),
		recv:    make(chan lamportmutex.Message, cfg.ReceiveBuffer),
		conns:   make(map[net.Conn]struct{}),
		members: map[string]bool{cfg.ID: true},
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.log = t.log.With("transport", "tcp", "self", cfg.ID)
	for id, addr := range cfg.Peers {
		if id == cfg.ID {
			continue
		}
		if id == "" || addr == "" {
			return nil, fmt.Errorf("transport: peer %q has address %q", id, addr)
		}
		p := &peer{id: id, addr: addr}
		p.out.init(cfg.SendQueue, cfg.SendQueueBytes)
		t.peers[id] = p
		t.members[id] = true
	}
	if cfg.TLS != nil {
		t.serverTLS = cfg.TLS.Clone()
		t.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	t.ln = cfg.Listener
	if t.ln == nil {
		ln, err := net.Listen("tcp", cfg.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen on %q: %w", cfg.ListenAddr, err)
		}
		t.ln = ln
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.done = t.ctx.Done()
	t.spawn(t.acceptLoop)
	for _, p := range t.peers {
		t.spawn(func() { t.runOutbound(p) })
	}
	t.log.Debug("transport started", "addr", t.ln.Addr().String(), "incarnation", t.inc)
	return t, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// ID returns the local peer's id.
func (t *TCP) ID() string { return t.id }

// Addr returns the address the transport listens on.
func (t *TCP) Addr() net.Addr { return t.ln.Addr() }

// Incarnation returns this run's incarnation, as sent in handshakes.
func (t *TCP) Incarnation() uint64 { return t.inc }

// MaxPayload returns the largest release payload a message can carry within
// MaxFrameSize (it implements lamportmutex.PayloadLimiter, so Mutex.Unlock
// refuses a larger payload while still holding the lock).
func (t *TCP) MaxPayload() int {
	longest := len(t.id)
	for id := range t.cfg.Peers {
		longest = max(longest, len(id))
	}
	// The frame's type and sequence number, then the message: the array
	// header, kind, two strings with their headers, clock, the payload's
	// binary header and the incarnation, each integer at most 9 bytes.
	overhead := seqFrameSize + 1 + 9 + 2*(5+longest) + 9 + 5 + 9
	return max(0, t.cfg.MaxFrameSize-overhead)
}

// Receive returns the channel of inbound messages; it is closed by Close.
func (t *TCP) Receive() <-chan lamportmutex.Message { return t.recv }

// Send queues msg for delivery to msg.To. It blocks while that peer's queue
// is full (SendQueue messages or SendQueueBytes bytes), until ctx ends. It fails with ErrWrongSender, ErrUnsendable,
// ErrUnknownPeer, ErrFrameTooLarge, ErrClosed or ctx's error.
func (t *TCP) Send(msg lamportmutex.Message) error {
	if msg.From != t.id {
		return fmt.Errorf("%w: From %q, local id %q", ErrWrongSender, msg.From, t.id)
	}
	if !msg.Kind.Valid() || msg.Kind == lamportmutex.PeerUp || msg.Kind == lamportmutex.PeerDown {
		return fmt.Errorf("%w: %v", ErrUnsendable, msg.Kind)
	}
	p := t.peers[msg.To]
	if p == nil {
		return fmt.Errorf("%w %q", ErrUnknownPeer, msg.To)
	}
	if t.isDone() {
		return ErrClosed
	}
	body, err := marshalMessage(msg)
	if err != nil {
		return err
	}
	if n := seqFrameSize + len(body); n > t.cfg.MaxFrameSize {
		return fmt.Errorf("%w: message to %q needs %d bytes, limit %d", ErrFrameTooLarge, msg.To, n, t.cfg.MaxFrameSize)
	}
	select {
	case p.out.slots <- struct{}{}:
	default:
		return fmt.Errorf("transport: send to %q: %w", msg.To, lamportmutex.ErrQueueFull)
	}
	for {
		if t.isDone() {
			<-p.out.slots
			return ErrClosed
		}
		s, room := p.out.push(body)
		if room == nil {
			if s == nil || !t.writeDirect(p, s) {
				p.out.wakeWriter()
			}
			return nil
		}
		<-p.out.slots
		return fmt.Errorf("transport: send to %q: %w", msg.To, lamportmutex.ErrQueueFull)
	}
}

// Start begins delivery to deliver, on a goroutine of the transport's.
func (t *TCP) Start(deliver func(lamportmutex.Message)) error {
	if t.isDone() {
		return ErrClosed
	}
	if !t.started.CompareAndSwap(false, true) {
		return errors.New("transport: started twice")
	}
	t.pumped = make(chan struct{})
	go func() {
		defer close(t.pumped)
		for m := range t.recv {
			deliver(m)
		}
	}()
	return nil
}

// Flush waits until what was sent to connected peers is acknowledged.
func (t *TCP) Flush(ctx context.Context) error { return t.Drain(ctx) }

// Drain waits until every message sent to a connected peer has been
// acknowledged, or ctx ends (its error is returned). A peer that is not
// connected is not waited for: its messages wait for its next connection.
// Call it before Close to shut down without losing what was just sent,
// such as the RELEASE a closing Mutex sends.
func (t *TCP) Drain(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		pending := false
		for _, p := range t.Status() {
			pending = pending || (p.Connected && p.Queued > 0)
		}
		if !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// goodbyeWait bounds the part of Close that says goodbye: after it, every
// connection still open is closed.
const goodbyeWait = time.Second

// Close says goodbye to every peer whose stream is healthy, closes the
// listener and every connection, stops every goroutine, then closes the
// Receive channel. Messages still queued are dropped (see Drain). It is
// safe to call more than once.
//
// Saying goodbye takes a round trip and at most goodbyeWait (1 second):
// Close stops accepting, dialing and delivering, writes what is queued and
// a GOODBYE frame on each established connection (after the last ACK, on
// the peer's stream to us), and waits for the peer to close the
// connection, so that it logs a departure instead of a broken connection.
func (t *TCP) Close(ctx context.Context) error {
	_ = t.Drain(ctx)
	err := t.shutdown()
	if t.started.Load() {
		<-t.pumped
	}
	return err
}

func (t *TCP) shutdown() error {
	t.closeOnce.Do(func() {
		t.cancel() // t.done: Send fails, no dial, accept or delivery; sessions say goodbye
		if err := t.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.closeErr = fmt.Errorf("transport: close listener: %w", err)
		}
		t.pending.closeAll()
		quiet := make(chan struct{})
		go func() {
			t.wg.Wait()
			close(quiet)
		}()
		tm := time.NewTimer(goodbyeWait)
		select {
		case <-quiet:
		case <-tm.C:
		}
		tm.Stop()
		t.mu.Lock()
		t.closed = true
		conns := make([]net.Conn, 0, len(t.conns))
		for c := range t.conns {
			conns = append(conns, c)
		}
		t.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
		<-quiet
		close(t.recv)
		t.log.Debug("transport closed")
	})
	return t.closeErr
}

// authenticated reports whether handshakes are authenticated (TLS).
func (t *TCP) authenticated() bool { return t.serverTLS != nil }

func (t *TCP) isDone() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// spawn runs f in a goroutine that Close waits for, unless closed.
func (t *TCP) spawn(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// track registers c so that Close closes it; it closes c and returns false
// if the transport is closed.
func (t *TCP) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (t *TCP) untrack(c net.Conn) {
	_ = c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// killConn closes one connection chosen by rng, if any; a test hook.
func (t *TCP) killConn(rng *rand.Rand) bool {
	t.mu.Lock()
	var victim net.Conn
	n := 0
	for c := range t.conns {
		n++
		if rng.IntN(n) == 0 {
			victim = c
		}
	}
	t.mu.Unlock()
	if victim == nil {
		return false
	}
	_ = victim.Close()
	return true
}

// connError logs a connection's end and reports it to the test hook.
func (t *TCP) connError(peer, dir string, remote net.Addr, err error) {
	if t.cfg.onConnError != nil {
		t.cfg.onConnError(peer, err)
	}
	level := slog.LevelWarn
	switch {
	case t.isDone(), errors.Is(err, ErrQuarantined), errors.Is(err, errEvicted), errors.Is(err, errPeerRestarted):
		level = slog.LevelDebug // our Close; or Quarantine, the eviction or the restart logged the cause
	case errors.Is(err, errNothingSent), errors.Is(err, errDialerHungUp):
		level = slog.LevelDebug // a port scan, or a peer that gave up dialing: no fault
	}
	ra := ""
	if remote != nil {
		ra = remote.String()
	}
	t.log.Log(context.Background(), level, "transport: connection closed", "peer", peer, "dir", dir, "remote", ra, "err", err)
}

// errNothingSent ends an accepted connection closed before its first byte;
// errDialerHungUp one whose dialer closed or reset it during the TLS
// handshake (a peer that gave up dialing, as Close does; a TLS error on
// either side ends it with an alert instead).
var (
	errNothingSent  = errors.New("closed before sending anything")
	errDialerHungUp = errors.New("the dialer hung up")
)

// event reports a connection event to the test hook.
func (t *TCP) event(peer, ev string) {
	if t.cfg.onEvent != nil {
		t.cfg.onEvent(peer, ev)
	}
}

// deliver puts m on the Receive channel unless stop or Close comes first.
func (t *TCP) deliver(m lamportmutex.Message, stop <-chan struct{}) bool {
	select {
	case t.recv <- m:
		return true
	case <-stop:
		return false
	case <-t.done:
		return false
	}
}

// backoff returns a delay in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// sleep waits d or until Close; it reports whether the transport is open.
func (t *TCP) sleep(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.done:
		return false
	}
}

// Quarantine implements lamportmutex.Transport: it ends the session with
// incarnation inc of peer, and refuses that incarnation from then on (with
// TLS also older ones; without TLS only inc, and a later Quarantine of the
// same peer replaces it: see Incarnations on TCP), in both directions:
//
//   - Inbound: the peer's stream to us is closed at once if it is a refused
//     incarnation; its messages not yet delivered are dropped (one whose
//     delivery was under way may still reach Receive; the Mutex ignores
//     it). Its handshakes with a refused incarnation are refused; another
//     incarnation is accepted as a restart and delivers PeerUp first.
//   - Outbound: our stream to the peer is closed if it reached a refused
//     incarnation, and we keep redialing but close any connection whose
//     welcome carries one. Messages we queued for the peer are kept and go
//     to its next incarnation, as after any restart.
//
// It logs one line at Warn. It never blocks; unknown peers and calls after
// Close are ignored.
func (t *TCP) Quarantine(peer string, inc uint64, cause error) {
	p := t.peers[peer]
	if p == nil || t.isDone() {
		return
	}
	t.log.Warn("transport: peer quarantined", "peer", printable(peer), "incarnation", inc, "cause", cause)
	auth := t.authenticated()
	ip := &p.in
	ip.mu.Lock()
	ip.quarantined = quarantineMark(ip.quarantined, inc, auth)
	var cur *inSession
	if ip.cur != nil && refusedInc(inc, ip.inc, auth) {
		cur = ip.cur
	}
	ip.mu.Unlock()
	if cur != nil {
		cur.close()
	}
	o := &p.out
	o.mu.Lock()
	o.quarantined = quarantineMark(o.quarantined, inc, auth)
	var sess *outSession
	if o.sess != nil && refusedInc(inc, o.remoteInc, auth) {
		sess = o.sess
	}
	o.mu.Unlock()
	if sess != nil {
		sess.fail(fmt.Errorf("%w: %q incarnation %d: %w", ErrQuarantined, peer, inc, cause))
	}
}

// quarantineMark returns what a peer's side stores after quarantining
// incarnation inc, given mark, what it stored before (0: nothing): with
// authenticated handshakes the highest incarnation quarantined, else inc.
func quarantineMark(mark, inc uint64, authenticated bool) uint64 {
	if authenticated {
		return max(mark, inc)
	}
	return inc
}

// refusedInc reports whether incarnation inc is refused given mark, as
// stored by quarantineMark: with authenticated handshakes mark and older
// ones, else mark only. Incarnation 0 is never valid, so mark 0 refuses
// nothing that passed the handshake.
func refusedInc(mark, inc uint64, authenticated bool) bool {
	if authenticated {
		return inc <= mark
	}
	return inc == mark
}
