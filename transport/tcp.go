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
	DefaultQueueBytes        = 16 << 20
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
	// HeartbeatInterval is how often each end of a connection repeats its
	// last ACK, so that the other hears from it while the stream is idle.
	HeartbeatInterval time.Duration
	// IdleTimeout closes a connection on which nothing arrived for that
	// long (a half-open connection). It must exceed HeartbeatInterval.
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay of the lower id
	// of a pair (the dialer), which doubles after each failed attempt,
	// with jitter, and resets after a successful handshake; and the delay
	// between the kicks of the higher id while no connection is up. When
	// the peer kicks (it restarted, or is reachable again) while our
	// connection to it is down, we dial it at once.
	BackoffMin, BackoffMax time.Duration
	// QueueBytes bounds, per peer, the encoded size (frames included) of
	// the messages Send accepted and the peer has not acknowledged: queued,
	// written, or held while the peer is down. Send refuses a message that
	// would pass it, and a Data message that would pass half of it, with
	// an error wrapping lamportmutex.ErrQueueFull. MaxPayload is at most
	// what fits in half of it. The default, DefaultQueueBytes (16 MiB),
	// holds four frames of the default MaxFrameSize.
	QueueBytes int
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
// Each pair of peers has one connection, dialed by the lower id: it carries
// the messages of both, and the acknowledgements of both. There is never
// more than one live connection per pair.
//
// The wire format, the handshake's checks, incarnations, goodbye and the
// defences against hostile input are described once, in the package
// documentation (TCP wire format).
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
	payLimit  int             // what MaxPayload returns
	shaking   atomic.Int32    // goroutines running an accepted connection's handshake
	pending   pendingSet      // accepted connections in their handshake
	capWarned atomic.Int64    // monoNow of the last Warn about the handshake caps

	ctx    context.Context // cancelled by Close; bounds dials and handshakes
	cancel context.CancelFunc
	done   <-chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	started   atomic.Bool
	startCh   chan struct{}              // closed by Start, after deliverFn is set
	deliverFn func(lamportmutex.Message) // set once by Start
	closing   atomic.Bool                // Close was called
	closedCh  chan struct{}              // closed when the first Close returns
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
// makes the end of the stream no fault, marks the peer Left in Status,
// stops the dialer logging that p cannot be reached, and ends what Flush
// waits for from inc: a transport that said goodbye is closed, so inc
// acknowledges nothing more.
func (t *TCP) peerLeft(p *peer, dir string, inc uint64) {
	p.mu.Lock()
	first := !p.left || p.leftInc != inc
	p.left, p.leftInc = true, inc
	p.mu.Unlock()
	p.out.mu.Lock()
	if p.out.remoteInc == inc {
		p.out.newEpoch()
	}
	p.out.mu.Unlock()
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
	setDefault(&cfg.QueueBytes, DefaultQueueBytes)
	setDefault(&cfg.version, protocolVersion)
	setDefault(&cfg.preambleTimeout, preambleTimeout)
	if cfg.IdleTimeout <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("transport: IdleTimeout %v must exceed HeartbeatInterval %v", cfg.IdleTimeout, cfg.HeartbeatInterval)
	}
	if cfg.MaxFrameSize < seqFrameSize+1 {
		return nil, fmt.Errorf("transport: MaxFrameSize %d too small", cfg.MaxFrameSize)
	}
	if cfg.QueueBytes < 0 {
		return nil, fmt.Errorf("transport: QueueBytes %d is negative", cfg.QueueBytes)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.Incarnation == 0 {
		cfg.Incarnation = max(uint64(time.Now().UnixNano()), 1)
	}
	t := &TCP{
		cfg:      cfg,
		id:       cfg.ID,
		inc:      cfg.Incarnation,
		version:  cfg.version,
		log:      cfg.Logger,
		peers:    make(map[string]*peer, len(cfg.Peers)),
		conns:    make(map[net.Conn]struct{}),
		members:  map[string]bool{cfg.ID: true},
		payLimit: maxPayload(&cfg),
		startCh:  make(chan struct{}),
		closedCh: make(chan struct{}),
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
		p.out.init(cfg.QueueBytes)
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
		if p.id > t.id {
			t.spawn(func() { t.runOutbound(p) })
		} else {
			t.spawn(func() { t.runKicks(p) })
		}
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

// MaxPayload returns the largest Message.Payload Send accepts: what fits in
// one frame of MaxFrameSize, and in half of QueueBytes (a Data message may
// fill at most half the queue).
func (t *TCP) MaxPayload() int { return t.payLimit }

// maxPayload computes MaxPayload from cfg.
func maxPayload(cfg *TCPConfig) int {
	longest := len(cfg.ID)
	for id := range cfg.Peers {
		longest = max(longest, len(id))
	}
	// The frame's type and sequence number, then the message: the array
	// header, kind, two strings with their headers, clock, the payload's
	// binary header and the incarnation, each integer at most 9 bytes.
	overhead := seqFrameSize + 1 + 9 + 2*(5+longest) + 9 + 5 + 9
	frame := min(cfg.MaxFrameSize, cfg.QueueBytes/2-frameLenSize)
	return max(0, frame-overhead)
}

// Send queues msgs, all for one peer, for delivery in order, and returns;
// it never blocks. When the connection to the peer is up and its writer
// idle, Send writes the messages itself, with everything else queued for
// the peer and an ACK in front, in one write (see writeDirect); else the
// connection's writer goroutine does. A Send from inside deliver (a REPLY
// sent by the deliver of a REQUEST) writes at once too, and its ACK
// acknowledges what was delivered before. Send queues all of msgs or none:
// it fails with ErrWrongSender, ErrUnsendable, ErrUnknownPeer, ErrMixedPeers,
// ErrFrameTooLarge (a payload above MaxPayload), ErrClosed, or an error
// wrapping lamportmutex.ErrQueueFull when a message would take what is
// held for the peer past QueueBytes (a Data message: past half of it).
func (t *TCP) Send(msgs ...lamportmutex.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	to := msgs[0].To
	p := t.peers[to]
	if p == nil {
		return fmt.Errorf("%w %q", ErrUnknownPeer, to)
	}
	if t.isDone() || t.closing.Load() {
		return errClosed
	}
	var one [1]outBody
	bodies := one[:0]
	for _, msg := range msgs {
		body, err := t.encode(msg, to)
		if err != nil {
			return err
		}
		bodies = append(bodies, outBody{body: body, data: msg.Kind == lamportmutex.Data})
	}
	s, err := p.out.push(bodies)
	if err != nil {
		return fmt.Errorf("transport: send to %q: %w", to, err)
	}
	switch {
	case s == nil:
		p.out.wakeWriter()
	case !t.writeDirect(p, s):
		p.out.wakeWriter()
	}
	return nil
}

// encode checks msg, one of a Send to peer to, and returns its msgpack
// body.
func (t *TCP) encode(msg lamportmutex.Message, to string) ([]byte, error) {
	switch {
	case msg.From != t.id:
		return nil, fmt.Errorf("%w: From %q, local id %q", ErrWrongSender, msg.From, t.id)
	case msg.To != to:
		return nil, fmt.Errorf("%w: %q and %q", ErrMixedPeers, to, msg.To)
	case !msg.Kind.Valid() || msg.Kind == lamportmutex.PeerUp || msg.Kind == lamportmutex.PeerDown:
		return nil, fmt.Errorf("%w: %v", ErrUnsendable, msg.Kind)
	case len(msg.Payload) > t.MaxPayload():
		return nil, fmt.Errorf("%w: payload of %d bytes to %q, limit %d", ErrFrameTooLarge, len(msg.Payload), to, t.MaxPayload())
	}
	body, err := marshalMessage(msg)
	if err != nil {
		return nil, err
	}
	if n := seqFrameSize + len(body); n > t.cfg.MaxFrameSize {
		return nil, fmt.Errorf("%w: message to %q needs %d bytes, limit %d", ErrFrameTooLarge, to, n, t.cfg.MaxFrameSize)
	}
	return body, nil
}

// Start begins delivery to deliver, which runs on the goroutine reading
// the connection with the peer: one at a time per peer, in stream order.
// Nothing is delivered before Start. PeerDown is delivered when the
// connection ends after the peer's PeerUp (it broke, was closed, or the
// peer said goodbye), on that connection's reader, before any call for the
// next connection; what we sent the peer and it did not acknowledge waits
// for the next connection.
// A deliver that blocks stalls only the connection with that peer, whose
// reader it holds: our acknowledgements of the peer's messages wait, and
// so does the reading of its acknowledgements of ours (what we send it is
// still written), so both queues of the pair fill up; Close waits for it.
func (t *TCP) Start(deliver func(lamportmutex.Message)) error {
	if deliver == nil {
		return errors.New("transport: Start with a nil deliver")
	}
	if t.isDone() || t.closing.Load() {
		return errClosed
	}
	if !t.started.CompareAndSwap(false, true) {
		return errors.New("transport: started twice")
	}
	t.deliverFn = deliver
	close(t.startCh)
	return nil
}

// Flush waits until every message Send accepted before the call has been
// acknowledged by its peer, or can no longer be: the incarnation of the
// peer it was queued for ended (the message now waits for the next one),
// or was quarantined. For a peer that is down it waits until the peer is
// back, or ctx ends (ctx's error is returned); a peer that said goodbye
// (it closed its transport) is not waited for, since it acknowledges
// nothing more. After Close it returns ErrClosed.
func (t *TCP) Flush(ctx context.Context) error {
	if t.isDone() || t.closing.Load() {
		return errClosed
	}
	return t.flush(ctx)
}

func (t *TCP) flush(ctx context.Context) error {
	type mark struct {
		o          *outPeer
		epoch, seq uint64
	}
	marks := make([]mark, 0, len(t.peers))
	for _, p := range t.peers {
		p.mu.Lock()
		left := p.left
		p.mu.Unlock()
		if left {
			continue
		}
		p.out.mu.Lock()
		marks = append(marks, mark{&p.out, p.out.epoch, p.out.nextSeq - 1})
		p.out.mu.Unlock()
	}
	for _, m := range marks {
		for {
			changed := m.o.flushed(m.epoch, m.seq)
			if changed == nil {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return ctx.Err()
			case <-t.done:
				return errClosed
			}
		}
	}
	return nil
}

// errClosed is what Send, Start and Flush return after Close: it is both
// ErrClosed and lamportmutex.ErrClosed, as the Transport contract asks.
var errClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string { return ErrClosed.Error() }

func (closedError) Is(target error) bool {
	return target == ErrClosed || target == lamportmutex.ErrClosed
}

// goodbyeWait bounds the part of Close that says goodbye: after it, every
// connection still open is closed.
const goodbyeWait = time.Second

// Close flushes within ctx (see Flush), then says goodbye to every peer
// whose stream is healthy, closes the listener and every connection, and
// stops every goroutine; no deliver call runs after it returns (it waits
// for one under way). It returns ctx's error if the flush did not finish
// (the transport is closed all the same). A second Close waits for the
// first and returns nil. Close must not be called from deliver: it waits
// for every deliver call to return.
//
// Saying goodbye takes a round trip and at most goodbyeWait (1 second):
// Close stops accepting, dialing and delivering, writes what is queued, a
// last ACK (of what it delivered, a delivery under way included) and a
// GOODBYE frame on each established connection, and waits for the peer to
// close the connection, so that it logs a departure instead of a broken
// connection.
// Messages still unacknowledged then are dropped.
func (t *TCP) Close(ctx context.Context) error {
	if t.closing.Swap(true) {
		<-t.closedCh
		return nil
	}
	defer close(t.closedCh)
	ferr := t.flush(ctx)
	return errors.Join(ferr, t.shutdown())
}

func (t *TCP) shutdown() error {
	var closeErr error
	t.cancel() // t.done: Send fails, no dial, accept or delivery; sessions say goodbye
	if err := t.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		closeErr = fmt.Errorf("transport: close listener: %w", err)
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
	t.log.Debug("transport closed")
	return closeErr
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
	case t.isDone(), errors.Is(err, ErrQuarantined), errors.Is(err, errEvicted), errors.Is(err, errPeerRestarted), errors.Is(err, errReplaced):
		level = slog.LevelDebug // our Close; or Quarantine, the eviction, the restart or the dialer logged the cause
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

// deliver hands m to the function given to Start, on the calling reader
// goroutine, once Start was called; it returns false without delivering if
// stop or Close comes first. The caller holds no lock.
func (t *TCP) deliver(m lamportmutex.Message, stop <-chan struct{}) bool {
	select {
	case <-t.startCh:
	case <-stop:
		return false
	case <-t.done:
		return false
	}
	select {
	case <-stop:
		return false
	case <-t.done:
		return false
	default:
	}
	t.deliverFn(m)
	return true
}

// jitter returns a delay in [d/2, d).
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
// same peer replaces it: see Incarnations in doc.go), in both directions:
//
//   - The connection with the peer is closed at once if it reaches a
//     refused incarnation; its messages not yet delivered are dropped (one
//     whose delivery was under way may still complete; the Mutex ignores
//     it).
//   - Its handshakes and kicks with a refused incarnation are refused, and
//     if we dial, we keep redialing but close any connection whose welcome
//     carries one; another incarnation is accepted as a restart and
//     delivers PeerUp first.
//   - Messages we queued for the peer are kept and go to its next
//     incarnation, as after any restart.
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
	var cur *session
	if ip.cur != nil && refusedInc(inc, ip.inc, auth) {
		cur = ip.cur
	}
	ip.mu.Unlock()
	if cur != nil {
		cur.fail(fmt.Errorf("%w: %q incarnation %d: %w", ErrQuarantined, peer, inc, cause))
	}
	o := &p.out
	o.mu.Lock()
	o.quarantined = quarantineMark(o.quarantined, inc, auth)
	var sess *session
	if o.sess != nil && refusedInc(inc, o.remoteInc, auth) {
		sess = o.sess
	}
	if o.remoteInc != 0 && refusedInc(inc, o.remoteInc, auth) {
		o.newEpoch() // what Flush waits for can no longer be acknowledged
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
