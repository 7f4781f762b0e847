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
	cur         *session
	connected   bool
	since       time.Time

	msgs, byts atomic.Uint64
}

// begin makes s the peer's only session for incarnation inc, stopping and
// awaiting the previous one, and returns the last seq delivered from inc
// (0 for an incarnation new to us): where the peer should resume.
// It is the handshake's last check on our side of the connection, and the
// only place that changes the stored incarnation of the receiving half: it refuses a quarantined incarnation (with TLS, and
// older ones), a duplicate
// session (another incarnation whose session is live) and, with TLS, an
// incarnation older than the stored one. Without TLS an older incarnation
// is a restart like a newer one (see Incarnations in doc.go). A new
// session with the same incarnation replaces the old one: that is a
// reconnect after a dropped connection, which the acceptor may not have
// noticed yet. resumed reports whether the session continues the state
// of the same incarnation (false for an incarnation new to us).
func (t *TCP) begin(p *peer, s *session, inc uint64, remote net.Addr) (resume uint64, resumed bool, err error) {
	ip := &p.in
	ip.hsMu.Lock()
	defer ip.hsMu.Unlock()
	ip.mu.Lock()
	if err := t.admissible(p, inc, remote); err != nil {
		ip.mu.Unlock()
		return 0, false, err
	}
	old := ip.cur
	ip.cur = nil
	ip.mu.Unlock()
	if old != nil {
		old.fail(errReplaced)
		select {
		case <-old.exited:
		case <-t.done:
			return 0, false, ErrClosed
		}
	}
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if err := t.admissible(p, inc, remote); err != nil { // a Quarantine meanwhile
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
func (t *TCP) admissible(p *peer, inc uint64, remote net.Addr) error {
	ip := &p.in
	switch {
	case refusedInc(ip.quarantined, inc, t.authenticated()):
		return fmt.Errorf("%w: peer %q presented incarnation %d, quarantined (mark %d)", ErrQuarantined, p.id, inc, ip.quarantined)
	case inc < ip.inc && t.authenticated():
		return fmt.Errorf("%w: peer %q presented incarnation %d, already seen %d", ErrStaleIncarnation, p.id, inc, ip.inc)
	case ip.cur != nil && inc != ip.inc && ip.cur.live(2*t.cfg.HeartbeatInterval):
		return fmt.Errorf("%w: peer %q has a live session from %s (incarnation %d); refused %s (incarnation %d): are two processes running as %q?",
			ErrDuplicateSession, p.id, ip.cur.conn.RemoteAddr(), ip.inc, remote, inc, p.id)
	}
	return nil
}

// errReplaced ends a session that a new handshake of the same incarnation
// replaced (a reconnect the old session had not noticed).
var errReplaced = errors.New("replaced by a new connection")

// end forgets s if it is still the peer's session.
func (ip *inPeer) end(s *session) {
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
	s       *session
	conn    net.Conn // raw, or TLS over it
	inc     uint64   // the dialer's incarnation
	resume  uint64   // the last seq we delivered from inc, as in the welcome
	resumed bool     // the stream continues one of the same incarnation
}

// serveInbound shakes hands with a dialer and then runs the session.
func (t *TCP) serveInbound(raw net.Conn, pc *pending) {
	defer t.untrack(raw)
	in, ok := t.acceptHandshake(raw, pc)
	t.pending.remove(pc)
	t.shaking.Add(-1)
	if !ok {
		return
	}
	p := in.p
	t.event(p.id, "accepted")
	t.log.Info("transport: stream up", "peer", printable(p.id), "dir", "in", "remote", raw.RemoteAddr().String(), "incarnation", in.inc, "resumed", in.resumed, "resume", in.resume)
	if err := t.runSession(p, in.s, in.inc, "in"); err != nil && !errors.Is(err, errGoodbye) {
		t.connError(p.id, "in", raw.RemoteAddr(), err)
	}
	p.out.kickNow() // runKicks: ask the peer to dial again at once
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
// success the session is the peer's current one, the welcome is sent and
// the dialer's RESUME read; otherwise the cause is logged and the dialer,
// if it speaks the protocol, gets a generic refusal. The first bytes must
// arrive within preambleTimeout, the whole handshake within
// HandshakeTimeout. A hello from a peer whose id is above ours is a kick
// (see runKicks): checked like any other, answered with refusalReversed,
// and closed.
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
	if err == nil && h.From > t.id {
		t.kicked(t.peers[h.From], h.Incarnation, remote, bw)
		return inbound{}, false
	}
	var in inbound
	if err == nil {
		in = inbound{p: t.peers[h.From], s: t.newSession(raw, conn, h.Incarnation), conn: conn, inc: h.Incarnation}
		in.resume, in.resumed, err = t.begin(in.p, in.s, h.Incarnation, remote)
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
	abandon := func(err error) (inbound, bool) {
		t.connError(h.From, "in", remote, err)
		in.s.fail(err)
		in.p.in.end(in.s)
		close(in.s.exited)
		return inbound{}, false
	}
	if err := writeWelcome(bw, t.version, welcome{From: t.id, Incarnation: t.inc, Resume: in.resume}); err != nil {
		return abandon(fmt.Errorf("sending welcome: %w", err))
	}
	t.noteIncarnation(in.p, h.Incarnation)
	// The dialer's RESUME is read byte-exact from conn: br holds nothing
	// (checked above), and the stream's reader starts after it.
	delivered, err := readResume(conn)
	if err != nil {
		return abandon(fmt.Errorf("reading RESUME: %w", err))
	}
	next, resumed, err := in.p.out.resume(h.From, h.Incarnation, delivered, t.authenticated())
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	if err == nil {
		in.s.setResume(next, in.resume)
		err = in.p.out.setConnected(in.s, t.authenticated())
	}
	if err != nil {
		return abandon(fmt.Errorf("resuming: %w", err))
	}
	in.resumed = in.resumed && resumed
	return in, true
}

// kicked answers a kick from p (a hello from the higher id, checked in
// full): unless p has a live session with another incarnation, which would
// make this a duplicate, our dialer is told that p is up (see
// peerKicked). The answer is refusalReversed, or a generic refusal.
func (t *TCP) kicked(p *peer, inc uint64, remote net.Addr, bw *bufio.Writer) {
	p.in.mu.Lock()
	err := t.admissible(p, inc, remote)
	p.in.mu.Unlock()
	if err != nil {
		t.connError(p.id, "in", remote, fmt.Errorf("refused handshake (a kick): %w", err))
		_ = writeWelcome(bw, t.version, welcome{Refusal: refusalFor(err)})
		return
	}
	t.log.Debug("transport: kicked: peer asks us to dial", "peer", printable(p.id), "incarnation", inc)
	t.peerKicked(p, inc)
	_ = writeWelcome(bw, t.version, welcome{From: t.id, Incarnation: t.inc, Refusal: refusalReversed})
}
