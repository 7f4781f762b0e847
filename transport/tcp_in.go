package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// inPeer is the receiving half of a peer.
type inPeer struct {
	hsMu sync.Mutex // serializes handshakes from the peer

	mu          sync.Mutex
	inc         uint64        // the peer's incarnation our state refers to
	quarantined uint64        // refused incarnations (see quarantineMark)
	last        atomic.Uint64 // last seq delivered from inc
	peerUp      bool          // PeerUp for inc not yet delivered
	cur         *inSession
	connected   bool
	since       time.Time

	msgs, byts atomic.Uint64
}

// Acknowledgement policy of the acceptor. An ACK per message would double
// the frames, system calls and goroutine wake-ups of a stream, so ACKs are
// coalesced: one is sent at once after every ackEvery deliveries and when
// the dialer asks with a PING (it does when half its queue awaits an ACK),
// else ackDelay after the first delivery not yet acknowledged. The ACK is
// off the path of every message: it only lets the dialer free its resend
// queue.
const (
	ackEvery = 64
	ackDelay = 5 * time.Millisecond
)

// inSession is one accepted stream.
type inSession struct {
	conn   net.Conn     // the TCP connection (below TLS, if any)
	seen   atomic.Int64 // monoNow when the last frame arrived
	busy   atomic.Bool  // the reader is inside deliver
	stop   chan struct{}
	once   sync.Once
	exited chan struct{} // closed when the session's goroutines are done
	ackNow chan struct{} // capacity 1: acknowledge at once

	// ackTimer fires ackDelay after a delivery found it disarmed. The
	// reader arms it (armed false to true, then Reset); the ACK writer
	// disarms it before it reads what to acknowledge, so no delivery is
	// left without a pending ACK.
	ackTimer *time.Timer
	armed    atomic.Bool
}

func newInSession(conn net.Conn) *inSession {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	s := &inSession{conn: conn, stop: make(chan struct{}), exited: make(chan struct{}), ackNow: make(chan struct{}, 1), ackTimer: tm}
	s.seen.Store(monoNow())
	return s
}

// live reports whether s is open and heard from within window (a dialer
// sends at least a PING every HeartbeatInterval), or is not reading because
// it is inside deliver.
func (s *inSession) live(window time.Duration) bool {
	select {
	case <-s.stop:
		return false
	default:
	}
	return s.busy.Load() || monoNow()-s.seen.Load() < int64(window)
}

// askAck wakes the ACK writer to acknowledge at once.
func (s *inSession) askAck() {
	select {
	case s.ackNow <- struct{}{}:
	default:
	}
}

func (s *inSession) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *inSession) close() {
	s.once.Do(func() {
		close(s.stop)
		_ = s.conn.Close()
	})
}

// begin makes s the peer's only session for incarnation inc, stopping and
// awaiting the previous one, and returns where the dialer should resume.
// It is the handshake's last check, and the only place that changes the
// stored incarnation: it refuses a quarantined incarnation (with TLS, and
// older ones), a duplicate
// session (another incarnation whose session is live) and, with TLS, an
// incarnation older than the stored one. Without TLS an older incarnation
// is a restart like a newer one (see Incarnations in doc.go). A new
// session with the same incarnation replaces the old one: that is a
// reconnect after a dropped connection, which the acceptor may not have
// noticed yet. resumed reports whether the session continues the state
// of the same incarnation (false for an incarnation new to us).
func (t *TCP) begin(p *peer, s *inSession, inc uint64) (resume uint64, resumed bool, err error) {
	ip := &p.in
	ip.hsMu.Lock()
	defer ip.hsMu.Unlock()
	ip.mu.Lock()
	if err := t.admissible(p, s, inc); err != nil {
		ip.mu.Unlock()
		return 0, false, err
	}
	old := ip.cur
	ip.cur = nil
	ip.mu.Unlock()
	if old != nil {
		old.close()
		select {
		case <-old.exited:
		case <-t.done:
			return 0, false, ErrClosed
		}
	}
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if err := t.admissible(p, s, inc); err != nil { // a Quarantine meanwhile
		return 0, false, err
	}
	resumed = inc == ip.inc
	if !resumed { // a restart: PeerUp first, sequence numbers from 1
		ip.inc = inc
		ip.last.Store(0)
		ip.peerUp = true
	}
	ip.cur = s
	ip.connected = true
	ip.since = time.Now()
	return ip.last.Load(), resumed, nil
}

// admissible checks incarnation inc of p against what is stored. The
// caller holds p.in.mu.
func (t *TCP) admissible(p *peer, s *inSession, inc uint64) error {
	ip := &p.in
	switch {
	case refusedInc(ip.quarantined, inc, t.authenticated()):
		return fmt.Errorf("%w: peer %q presented incarnation %d, quarantined (mark %d)", ErrQuarantined, p.id, inc, ip.quarantined)
	case inc < ip.inc && t.authenticated():
		return fmt.Errorf("%w: peer %q presented incarnation %d, already seen %d", ErrStaleIncarnation, p.id, inc, ip.inc)
	case ip.cur != nil && inc != ip.inc && ip.cur.live(2*t.cfg.HeartbeatInterval):
		return fmt.Errorf("%w: peer %q has a live session from %s (incarnation %d); refused %s (incarnation %d): are two processes running as %q?",
			ErrDuplicateSession, p.id, ip.cur.conn.RemoteAddr(), ip.inc, s.conn.RemoteAddr(), inc, p.id)
	}
	return nil
}

// end forgets s if it is still the peer's session.
func (ip *inPeer) end(s *inSession) {
	ip.mu.Lock()
	if ip.cur == s {
		ip.cur = nil
		ip.connected = false
		ip.since = time.Now()
	}
	ip.mu.Unlock()
}

// acceptLoop accepts connections until Close.
func (t *TCP) acceptLoop() {
	delay := 5 * time.Millisecond
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.isDone() || errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("transport: accept", "err", err)
			if !t.sleep(delay) {
				return
			}
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		if t.shaking.Add(1) > maxHandshakeGoroutines {
			t.shaking.Add(-1)
			_ = conn.Close()
			t.capLog(conn, "transport: too many handshakes under way, connection closed (connection flood?)")
			continue
		}
		pc := &pending{conn: conn, host: remoteHost(conn)}
		if old := t.pending.add(pc); old != nil {
			_ = old.conn.Close()
			t.capLog(old.conn, "transport: too many handshakes under way, a pending one closed (connection flood?)")
		}
		if !t.track(conn) {
			t.pending.remove(pc)
			t.shaking.Add(-1)
			return
		}
		if !t.spawn(func() { t.serveInbound(conn, pc) }) {
			t.pending.remove(pc)
			t.shaking.Add(-1)
			t.untrack(conn)
			return
		}
	}
}

// capLog logs a connection closed over the handshake caps: at Warn once per
// capWarnEvery, else at Debug.
func (t *TCP) capLog(conn net.Conn, msg string) {
	level := slog.LevelDebug
	if now, last := monoNow(), t.capWarned.Load(); last == 0 || now-last >= int64(capWarnEvery) {
		t.capWarned.Store(max(now, 1))
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, msg, "remote", conn.RemoteAddr().String(), "limit", maxPendingHandshakes)
	t.event("", "over handshake cap")
}

// maxIncarnationLead bounds how far a peer's incarnation may lie ahead of
// this machine's clock, in nanoseconds since the Unix epoch (what an
// Incarnation of zero becomes). A hello or welcome beyond it is refused and
// its incarnation never stored, so that one forged number cannot make the
// real peer's incarnations stale.
const maxIncarnationLead = 24 * time.Hour

// plausible checks that inc is not more than maxIncarnationLead ahead of
// the local clock.
func plausible(peer string, inc uint64) error {
	limit := uint64(time.Now().Add(maxIncarnationLead).UnixNano())
	if inc > limit {
		return fmt.Errorf("%w: peer %q presented incarnation %d, more than %v ahead of our clock", ErrProtocol, peer, inc, maxIncarnationLead)
	}
	return nil
}

// errEvicted marks the end of a handshake evicted over
// maxPendingHandshakes; it is logged at Debug (the eviction was logged).
var errEvicted = errors.New("evicted: too many handshakes under way")

// peekedConn is a connection whose first bytes were read ahead into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handshakeBuffer is the size of the buffers of a connection's handshake;
// the stream's buffers are allocated once the handshake is accepted.
const handshakeBuffer = 512

// inbound is an accepted connection whose handshake succeeded.
type inbound struct {
	p       *peer
	s       *inSession
	conn    net.Conn // raw, or TLS over it
	inc     uint64   // the dialer's incarnation
	resume  uint64
	resumed bool // the stream continues one of the same incarnation
}

// serveInbound shakes hands with a dialer and then reads its stream.
func (t *TCP) serveInbound(raw net.Conn, pc *pending) {
	defer t.untrack(raw)
	in, ok := t.acceptHandshake(raw, pc)
	t.pending.remove(pc)
	t.shaking.Add(-1)
	if !ok {
		return
	}
	p, s, remote := in.p, in.s, raw.RemoteAddr()
	var wg sync.WaitGroup
	defer func() {
		s.close()
		wg.Wait()
		p.in.end(s)
		close(s.exited)
	}()
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return
	}
	t.event(p.id, "accepted")
	t.log.Info("transport: stream up", "peer", printable(p.id), "dir", "in", "remote", remote.String(), "incarnation", in.inc, "resumed", in.resumed, "resume", in.resume)
	br := bufio.NewReaderSize(in.conn, 64<<10)
	bw := bufio.NewWriterSize(in.conn, 4<<10)
	wg.Add(1)
	if !t.spawn(func() {
		defer wg.Done()
		if err := t.writeAcks(p, s, bw, in.resume); err != nil {
			t.connError(p.id, "in", remote, err)
			s.close()
		}
	}) {
		wg.Done()
		return
	}
	switch err := t.readStream(p, s, br); {
	case errors.Is(err, errGoodbye):
		t.peerLeft(p, "in", in.inc)
	case err != nil:
		t.connError(p.id, "in", remote, err)
	}
	t.peerDown(p, in.inc)
}

// peerDown delivers PeerDown for incarnation inc of p as a session of it
// ends, on that session's reader goroutine (the next session delivers
// nothing before it is done: see begin). It is due only if PeerUp for inc
// was delivered, inc is not quarantined, and the transport is open.
func (t *TCP) peerDown(p *peer, inc uint64) {
	ip := &p.in
	ip.mu.Lock()
	due := !ip.peerUp && ip.inc == inc && !refusedInc(ip.quarantined, inc, t.authenticated())
	ip.mu.Unlock()
	if due {
		t.deliver(lamportmutex.Message{Kind: lamportmutex.PeerDown, From: p.id, To: t.id, Incarnation: inc}, nil)
	}
}

// acceptHandshake runs the acceptor's half of the handshake on raw. On
// success the session is the peer's current one and the welcome is sent;
// otherwise the cause is logged and the dialer, if it speaks the protocol,
// gets a generic refusal. The first bytes must arrive within
// preambleTimeout, the whole handshake within HandshakeTimeout.
func (t *TCP) acceptHandshake(raw net.Conn, pc *pending) (inbound, bool) {
	remote := raw.RemoteAddr()
	start, wait := time.Now(), min(t.cfg.preambleTimeout, t.cfg.HandshakeTimeout)
	if err := raw.SetDeadline(start.Add(wait)); err != nil {
		return inbound{}, false
	}
	first := preambleSize
	if t.serverTLS != nil {
		first = tlsRecordHeader
	}
	// Without TLS br is the handshake's reader; with TLS it holds the start
	// of the TLS stream. Either way it takes what the dialer sent at once,
	// so that a refusal does not close on unread bytes (a reset).
	br := bufio.NewReaderSize(raw, handshakeBuffer)
	if got, err := br.Peek(first); err != nil {
		if len(got) == 0 && errors.Is(err, io.EOF) {
			err = errNothingSent
		}
		if t.pending.wasEvicted(pc) {
			err = fmt.Errorf("%w: %w", errEvicted, err)
		} else if isTimeout(err) {
			err = fmt.Errorf("%w: no preamble within %v: %w", ErrProtocol, wait, err)
		}
		t.connError("", "in", remote, fmt.Errorf("refused handshake: %w", err))
		return inbound{}, false
	}
	if err := raw.SetDeadline(start.Add(t.cfg.HandshakeTimeout)); err != nil {
		return inbound{}, false
	}
	conn := raw
	var tc *tls.Conn
	if t.serverTLS != nil {
		tc = tls.Server(peekedConn{Conn: raw, r: br}, t.serverTLS)
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if t.pending.wasEvicted(pc) {
				err = fmt.Errorf("%w: %w", errEvicted, err)
			} else if hungUp(err) {
				err = fmt.Errorf("%w: %w", errDialerHungUp, err)
			}
			t.connError("", "in", remote, fmt.Errorf("TLS handshake: %w", err))
			return inbound{}, false
		}
		conn = tc
		br = bufio.NewReaderSize(tc, handshakeBuffer)
	}
	bw := bufio.NewWriterSize(conn, handshakeBuffer)
	check := helloCheck{version: t.version, self: t.id, cluster: t.cfg.Cluster, known: func(id string) bool { return t.peers[id] != nil }}
	h, refuse, err := readHello(br, check)
	if err == nil && tc != nil {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) == 0 {
			err, refuse = fmt.Errorf("%w %q: no certificate", ErrPeerCertificate, h.From), true
		} else if cerr := certNames(certs[0], t.members, h.From); cerr != nil {
			err, refuse = cerr, true
		}
	}
	if err == nil {
		err = plausible(h.From, h.Incarnation)
		refuse = err != nil
	}
	if err == nil && br.Buffered() > 0 {
		err, refuse = fmt.Errorf("%w: %q sent %d bytes before the welcome", ErrProtocol, h.From, br.Buffered()), true
	}
	// A checked hello leaves the pending handshakes: from here on the
	// handshake cannot be evicted, and it ends without waiting on the dialer.
	if err == nil && t.pending.remove(pc) {
		err, refuse = errEvicted, false
	}
	var in inbound
	if err == nil {
		in = inbound{p: t.peers[h.From], s: newInSession(raw), conn: conn, inc: h.Incarnation}
		in.resume, in.resumed, err = t.begin(in.p, in.s, h.Incarnation)
		refuse = err != nil
	}
	if err != nil {
		if !errors.Is(err, errEvicted) && t.pending.wasEvicted(pc) {
			err, refuse = fmt.Errorf("%w: %w", errEvicted, err), false
		}
		t.connError(printable(h.From), "in", remote, fmt.Errorf("refused handshake: %w", err))
		if refuse {
			_ = writeWelcome(bw, t.version, welcome{Refusal: refusalFor(err)})
		}
		return inbound{}, false
	}
	if err := writeWelcome(bw, t.version, welcome{From: t.id, Incarnation: t.inc, Resume: in.resume}); err != nil {
		t.connError(h.From, "in", remote, fmt.Errorf("sending welcome: %w", err))
		in.s.close()
		in.p.in.end(in.s)
		close(in.s.exited)
		return inbound{}, false
	}
	t.noteIncarnation(in.p, h.Incarnation)
	t.peerDialedIn(in.p, h.Incarnation)
	return in, true
}

// readStream delivers the dialer's messages until the stream breaks or s is
// stopped; it returns nil when stopped.
func (t *TCP) readStream(p *peer, s *inSession, br *bufio.Reader) error {
	ip := &p.in
	// dl stores in s.seen when the reader last looked for a frame: just
	// after the previous one arrived.
	dl := deadline{conn: s.conn, d: t.cfg.IdleTimeout, seen: &s.seen}
	buf := make([]byte, 512)
	stopped := func(err error) error {
		if s.stopped() {
			return nil
		}
		return err
	}
	// PeerUp is due only at the start of a session: begin sets it before
	// the session starts, and only this reader clears it.
	ip.mu.Lock()
	up, inc := ip.peerUp, ip.inc
	ip.mu.Unlock()
	if up {
		s.busy.Store(true)
		ok := t.deliver(lamportmutex.Message{Kind: lamportmutex.PeerUp, From: p.id, To: t.id, Incarnation: inc}, s.stop)
		s.busy.Store(false)
		if !ok {
			if s.stopped() {
				return nil
			}
		} else {
			ip.mu.Lock()
			ip.peerUp = false
			ip.mu.Unlock()
		}
	}
	last := ip.last.Load()
	asked := last // last seq an immediate ACK was asked for
	for {
		if err := dl.refresh(); err != nil {
			return stopped(err)
		}
		body, err := readFrame(br, t.cfg.MaxFrameSize, buf)
		if err != nil {
			return stopped(t.readErr(p.id, err))
		}
		if cap(body) > cap(buf) && cap(body) <= 64<<10 {
			buf = body[:0]
		}
		typ, seq, rest, err := parseDialerFrame(body)
		switch {
		case err != nil:
			return fmt.Errorf("%w from dialer %q", err, p.id)
		case typ == frameGoodbye:
			return errGoodbye
		case t.isDone():
			continue // we are leaving: nothing more is delivered or acknowledged
		case typ == framePing:
			s.askAck()
			asked = last
			continue
		}
		if seq <= last {
			continue // a resent duplicate
		}
		if seq != last+1 {
			return fmt.Errorf("%w: %q sent seq %d after %d", ErrProtocol, p.id, seq, last)
		}
		m, err := decodeMessage(rest, p.id, t.id)
		if err != nil {
			return fmt.Errorf("message %d from %q: %w", seq, p.id, err)
		}
		if m.From != p.id || m.To != t.id {
			return fmt.Errorf("%w: stream from %q carried %v", ErrProtocol, p.id, m)
		}
		s.busy.Store(true)
		ok := t.deliver(m, s.stop)
		s.busy.Store(false)
		if !ok {
			if s.stopped() {
				return nil
			}
			continue // we are leaving (see Close); the dialer keeps m
		}
		last = seq
		ip.last.Store(seq)
		ip.msgs.Add(1)
		ip.byts.Add(uint64(frameLenSize + len(body)))
		switch {
		case seq-asked >= ackEvery:
			s.askAck()
			asked = seq
		case !s.armed.Load() && s.armed.CompareAndSwap(false, true):
			s.ackTimer.Reset(ackDelay)
		}
	}
}

// writeAcks acknowledges deliveries as the policy above says, and repeats
// the last ACK every HeartbeatInterval.
func (t *TCP) writeAcks(p *peer, s *inSession, bw *bufio.Writer, sent uint64) error {
	tick := time.NewTicker(t.cfg.HeartbeatInterval)
	defer tick.Stop()
	defer s.ackTimer.Stop()
	wd := writeDeadline{conn: s.conn, d: t.cfg.WriteTimeout}
	for {
		force := false
		select {
		case <-s.ackNow:
		case <-s.ackTimer.C:
			s.armed.Store(false) // before loading last: see inSession
		case <-tick.C:
			force = true
		case <-s.stop:
			return nil
		case <-t.done:
			return t.goodbyeIn(p, s, bw, &wd, sent)
		}
		last := p.in.last.Load()
		if last == sent && !force {
			continue
		}
		if err := wd.refresh(); err != nil {
			return nil
		}
		err := writeSeqFrame(bw, frameAck, last, nil)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			select {
			case <-s.stop:
				return nil
			default:
			}
			return t.writeErr(p, err)
		}
		sent = last
	}
}

// goodbyeIn ends a healthy inbound session as the transport closes: it
// acknowledges what was delivered and sends GOODBYE. The reader goes on
// reading, delivering nothing, until the dialer closes the connection, so
// that closing it does not reset it with unread bytes.
func (t *TCP) goodbyeIn(p *peer, s *inSession, bw *bufio.Writer, wd *writeDeadline, sent uint64) error {
	if s.stopped() {
		return nil
	}
	err := wd.refresh()
	if last := p.in.last.Load(); err == nil && last != sent {
		err = writeSeqFrame(bw, frameAck, last, nil)
	}
	if err == nil {
		_, err = bw.Write(goodbyeFrame)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil && !s.stopped() {
		return t.writeErr(p, err)
	}
	return nil
}
