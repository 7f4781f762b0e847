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
	"syscall"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// outPeer is the sending half of a peer: the queue of messages not yet
// acknowledged, in sequence order. Its mu is held only for short work that
// never waits (no I/O, no deliver).
type outPeer struct {
	wake chan struct{} // capacity 1: tells the writer the queue grew
	// kick, capacity 1: the peer kicked, so dial it at once; for a peer
	// that dials us, the connection ended, so ask it to dial at once.
	kick chan struct{}

	mu          sync.Mutex
	q           []outMsg      // seq contiguous, ascending; acknowledged ones removed
	spare       []outMsg      // q's backing array from its start, reused once q is empty
	qBytes      int           // the frames' bytes in q (see frameBytes)
	maxBytes    int           // bound of qBytes (QueueBytes)
	epoch       uint64        // grows when what q holds can no longer be acknowledged by remoteInc
	changed     chan struct{} // closed when q shrinks or epoch grows; nil if nobody waits
	nextSeq     uint64        // seq of the next message pushed
	remoteInc   uint64        // incarnation of the peer our seqs refer to
	quarantined uint64        // refused incarnations (see quarantineMark)
	sess        *session      // the established stream, if any
	connected   bool
	since       time.Time
	sessions    uint64
	msgs, byts  atomic.Uint64
}

// maxSpare bounds the backing array an empty queue keeps for reuse.
const maxSpare = 64

type outMsg struct {
	seq  uint64
	body []byte // msgpack message
}

// outBody is a message Send is about to push: its msgpack body, and
// whether it is of Kind Data.
type outBody struct {
	body []byte
	data bool
}

func (o *outPeer) init(bytes int) {
	o.wake = make(chan struct{}, 1)
	o.kick = make(chan struct{}, 1)
	o.nextSeq = 1
	o.maxBytes = bytes
}

// frameBytes is what a message of body counts toward QueueBytes: its
// whole DATA frame.
func frameBytes(body []byte) int { return frameLenSize + seqFrameSize + len(body) }

// push appends msgs, in order, and returns the established stream, if
// any. It refuses them all (with ErrQueueFull) if one would take the queue
// past maxBytes, or past half of it if data (a Data message).
func (o *outPeer) push(msgs []outBody) (*session, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	held := o.qBytes
	for _, m := range msgs {
		n := frameBytes(m.body)
		limit := o.maxBytes
		if m.data {
			limit /= 2
		}
		if held+n > limit {
			return nil, fmt.Errorf("%w: %d bytes held, %d more, limit %d", lamportmutex.ErrQueueFull, held, n, limit)
		}
		held += n
	}
	if len(o.q) == 0 {
		o.q = o.spare[:0]
	}
	for _, m := range msgs {
		moves := len(o.q) == cap(o.q) // append copies q to the start of a new array
		o.q = append(o.q, outMsg{seq: o.nextSeq, body: m.body})
		if moves {
			o.spare = o.q[:0]
		}
		o.nextSeq++
	}
	o.qBytes = held
	return o.sess, nil
}

// signal wakes whoever waits in flushed. Caller holds mu.
func (o *outPeer) signal() {
	if o.changed != nil {
		close(o.changed)
		o.changed = nil
	}
}

// newEpoch records that what q holds can no longer be acknowledged by the
// incarnation it was sent to. Caller holds mu.
func (o *outPeer) newEpoch() {
	o.epoch++
	o.signal()
}

// flushed returns nil if every message up to seq, pushed in epoch, is
// acknowledged or can no longer be; otherwise a channel closed at the
// next change.
func (o *outPeer) flushed(epoch, seq uint64) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.epoch != epoch || o.base() > seq {
		return nil
	}
	if o.changed == nil {
		o.changed = make(chan struct{})
	}
	return o.changed
}

// wakeWriter tells the writer goroutine to look at the queue.
func (o *outPeer) wakeWriter() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// base returns the seq of q[0] (nextSeq if q is empty). Caller holds mu.
func (o *outPeer) base() uint64 { return o.nextSeq - uint64(len(o.q)) }

// ackTo drops every message up to seq. Caller holds mu and has checked
// base()-1 <= seq < nextSeq.
func (o *outPeer) ackTo(seq uint64) {
	n := int(seq + 1 - o.base())
	if n <= 0 {
		return
	}
	for _, m := range o.q[:n] {
		o.qBytes -= frameBytes(m.body)
	}
	o.signal()
	clear(o.q[:n])
	o.q = o.q[n:]
	if len(o.q) == 0 {
		o.q = nil
		if cap(o.spare) > maxSpare {
			o.spare = nil // let a burst's backing array go
		}
	}
}

// resume adopts the peer's incarnation inc and resume point (the last seq
// it delivered from us: the welcome's Resume, or the dialer's RESUME) and
// returns the first seq to send, and whether the stream continues one to
// the same incarnation. An
// incarnation older than the one our sequence numbers refer to is refused
// if authenticated (with TLS), else taken as a restart like a newer one
// (see Incarnations in doc.go).
func (o *outPeer) resume(peer string, inc, resume uint64, authenticated bool) (next uint64, resumed bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if refusedInc(o.quarantined, inc, authenticated) {
		return 0, false, fmt.Errorf("%w: peer %q answered with incarnation %d, quarantined (mark %d)", ErrQuarantined, peer, inc, o.quarantined)
	}
	resumed = inc == o.remoteInc
	if !resumed {
		if inc < o.remoteInc && authenticated {
			return 0, false, fmt.Errorf("%w: peer %q answered with incarnation %d, already seen %d", ErrStaleIncarnation, peer, inc, o.remoteInc)
		}
		for i := range o.q {
			o.q[i].seq = uint64(i + 1)
		}
		o.nextSeq = uint64(len(o.q) + 1)
		if o.remoteInc != 0 {
			o.newEpoch() // the incarnation our messages were for ended
		}
		o.remoteInc = inc
	}
	if resume+1 < o.base() || resume >= o.nextSeq {
		return 0, false, fmt.Errorf("%w: peer %q resumes after %d, but we hold %d..%d", ErrProtocol, peer, resume, o.base(), o.nextSeq-1)
	}
	o.ackTo(resume)
	return resume + 1, resumed, nil
}

// pending appends to dst up to max messages from seq on, and returns
// whether what is held has reached a quarter of the bound (time to ask for
// an ACK).
func (o *outPeer) pending(seq uint64, dst []outMsg, max int) ([]outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := int(seq - o.base())
	if seq < o.base() {
		i = 0
	}
	for ; i < len(o.q) && len(dst) < max; i++ {
		dst = append(dst, o.q[i])
	}
	return dst, o.qBytes >= o.maxBytes/4
}

// setConnected records s as the established stream, or none if s is nil.
// It refuses s if the peer's incarnation was quarantined since the welcome.
func (o *outPeer) setConnected(s *session, authenticated bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s != nil && refusedInc(o.quarantined, o.remoteInc, authenticated) {
		return fmt.Errorf("%w: incarnation %d", ErrQuarantined, o.remoteInc)
	}
	o.sess = s
	o.connected = s != nil
	o.since = time.Now()
	if s != nil {
		o.sessions++
	}
	return nil
}

// runOutbound keeps a stream to p open until Close, for a peer whose id
// is above ours (the lower id dials). Between attempts it waits with
// backoff, but dials at once when p kicks (see peerKicked).
func (t *TCP) runOutbound(p *peer) {
	delay := t.cfg.BackoffMin
	failing := false // a dial failed since the last stream, or p left: log no more failures
	for !t.isDone() {
		established, err := t.connectOnce(p)
		if t.isDone() {
			return
		}
		if established {
			delay = t.cfg.BackoffMin
			failing = false
		} else {
			delay = min(delay*2, t.cfg.BackoffMax)
		}
		switch {
		case err == nil:
		case errors.Is(err, errGoodbye):
			failing = true // it is gone until it restarts: its address refusing us is no news
		case established:
			t.connError(p.id, "out", nil, err)
		case errors.Is(err, errDial):
			t.unreachable(p.id, err, failing)
			failing = true
		default:
			t.connError(p.id, "dial", nil, err)
		}
		open, kicked := t.pause(p, jitter(delay))
		if !open {
			return
		}
		if kicked {
			delay = t.cfg.BackoffMin
			t.log.Debug("transport: peer kicked, dialing it at once", "peer", printable(p.id))
		}
	}
}

// runKicks, for a peer whose id is below ours (it dials us), asks the peer
// to dial at once when we have no stream with it: at start (we may have
// restarted, and a peer in backoff would find us only at its next attempt),
// and then, while no stream is up, with backoff as a dialer would. A kick
// is a hello from us: the peer checks it as any hello, answers
// refusalReversed, and dials us at once if its connection to us is down or
// reaches another incarnation of us (see peerKicked).
func (t *TCP) runKicks(p *peer) {
	var wait time.Duration // the first kick goes at once
	delay := t.cfg.BackoffMin
	failing := false // a kick failed to reach p since the last stream: log no more
	for {
		if wait > 0 && !t.sleep(jitter(wait)) {
			return
		}
		if t.isDone() {
			return
		}
		if p.out.isConnected() {
			select {
			case <-p.out.kick: // the stream ended
			case <-t.done:
				return
			}
			wait, delay, failing = t.cfg.BackoffMin, t.cfg.BackoffMin, false
			continue
		}
		switch err := t.kickOnce(p); {
		case err == nil || t.isDone():
		case errors.Is(err, errDial):
			t.unreachable(p.id, err, failing)
			failing = true
		default:
			t.connError(p.id, "kick", nil, err)
		}
		wait = delay
		delay = min(delay*2, t.cfg.BackoffMax)
	}
}

// kickOnce dials p, sends our hello and expects refusalReversed.
func (t *TCP) kickOnce(p *peer) error {
	raw, conn, err := t.dial(p)
	if err != nil {
		return err
	}
	defer t.untrack(raw)
	if err := conn.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(conn, handshakeBuffer)
	h := hello{From: t.id, To: p.id, Cluster: t.cfg.Cluster, Incarnation: t.inc}
	if err := writeHello(bw, t.version, h); err != nil {
		if hungUp(err) {
			err = fmt.Errorf("%w %q at %s: it closed the connection before our hello: %w", errDial, p.id, p.addr, err)
		}
		return fmt.Errorf("sending a kick to %q: %w", p.id, err)
	}
	cr := &countingReader{r: conn}
	wl, err := readWelcome(bufio.NewReaderSize(cr, handshakeBuffer), t.version, p.id)
	switch {
	case wl.Refusal == refusalReversed:
		return nil
	case err != nil && cr.n == 0 && hungUp(err):
		return fmt.Errorf("%w %q at %s: it closed the connection without answering: %w", errDial, p.id, p.addr, err)
	case errors.Is(err, ErrDuplicateSession):
		return fmt.Errorf("%w: %q at %s already has a live session from another process claiming our id %q (this one is %s)",
			err, p.id, raw.RemoteAddr(), t.id, raw.LocalAddr())
	case err == nil:
		return fmt.Errorf("%w: %q accepted a hello from the higher id", ErrProtocol, p.id)
	}
	return err
}

// pause waits d, or less if p's kick channel is signalled meanwhile
// (kicked); open reports whether the transport is still open.
func (t *TCP) pause(p *peer, d time.Duration) (open, kicked bool) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true, false
	case <-p.out.kick:
		return true, true
	case <-t.done:
		return false, false
	}
}

// isConnected reports whether a stream with the peer is established.
func (o *outPeer) isConnected() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sess != nil
}

// kickNow signals the kick channel.
func (o *outPeer) kickNow() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// peerKicked is told that p, whose id is above ours, sent a hello with
// incarnation inc that passed every check (a kick): p is up. If our
// connection to p is down, the dialer is woken to dial at once instead of
// finishing its backoff (up to BackoffMax). If it is up but reaches another
// incarnation, that one is gone (a process keeps its incarnation), so the
// connection is closed and redialed at once. Each call costs at most one
// dial, and only a peer that passed the handshake makes it.
func (t *TCP) peerKicked(p *peer, inc uint64) {
	o := &p.out
	o.mu.Lock()
	var stale *session
	if o.sess != nil && o.remoteInc != inc {
		stale = o.sess
	}
	up := o.sess != nil
	o.mu.Unlock()
	if stale != nil {
		stale.fail(fmt.Errorf("%w: %q kicked as incarnation %d, our connection reaches %d", errPeerRestarted, p.id, inc, stale.remoteInc))
	}
	if !up || stale != nil {
		o.kickNow()
	}
}

// errPeerRestarted closes a stream to an incarnation that a newer one
// replaced; it is logged at Debug (the restart is logged at Info).
var errPeerRestarted = errors.New("peer restarted")

// dial connects to p, with TLS if configured.
func (t *TCP) dial(p *peer) (net.Conn, net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	raw, err := d.DialContext(t.ctx, "tcp", p.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %q at %s: %w", errDial, p.id, p.addr, err)
	}
	if !t.track(raw) {
		return nil, nil, ErrClosed
	}
	if t.cfg.TLS == nil {
		return raw, raw, nil
	}
	tc := tls.Client(raw, clientTLS(t.cfg.TLS, t.members, p.id))
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.untrack(raw)
		if hungUp(err) {
			err = fmt.Errorf("%w %q at %s: it closed the connection during the TLS handshake: %w", errDial, p.id, p.addr, err)
		}
		return nil, nil, fmt.Errorf("TLS handshake with %q at %s: %w", p.id, p.addr, err)
	}
	return raw, tc, nil
}

// connectOnce dials p, shakes hands and runs the session until it breaks.
// established reports whether the handshake succeeded.
func (t *TCP) connectOnce(p *peer) (established bool, err error) {
	raw, conn, err := t.dial(p)
	if err != nil {
		return false, err
	}
	defer t.untrack(raw)
	cr := &countingReader{r: conn}
	br := bufio.NewReaderSize(cr, handshakeBuffer)
	bw := bufio.NewWriterSize(conn, handshakeBuffer) // the handshake only
	if err := conn.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout)); err != nil {
		return false, err
	}
	h := hello{From: t.id, To: p.id, Cluster: t.cfg.Cluster, Incarnation: t.inc}
	if err := writeHello(bw, t.version, h); err != nil {
		if hungUp(err) {
			err = fmt.Errorf("%w %q at %s: it closed the connection before our hello: %w", errDial, p.id, p.addr, err)
		}
		return false, fmt.Errorf("sending hello to %q: %w", p.id, err)
	}
	wl, err := readWelcome(br, t.version, p.id)
	if err != nil && cr.n == 0 && hungUp(err) {
		err = fmt.Errorf("%w %q at %s: it closed the connection without answering: %w", errDial, p.id, p.addr, err)
	}
	if errors.Is(err, ErrDuplicateSession) {
		return false, fmt.Errorf("%w: %q at %s already has a live session from another process claiming our id %q (this one is %s)",
			err, p.id, raw.RemoteAddr(), t.id, raw.LocalAddr())
	}
	if err == nil {
		err = plausible(p.id, wl.Incarnation)
	}
	if err == nil && br.Buffered() > 0 {
		err = fmt.Errorf("%w: %q sent %d bytes after its welcome, before our RESUME", ErrProtocol, p.id, br.Buffered())
	}
	if err != nil {
		return false, err
	}
	next, resumed, err := p.out.resume(p.id, wl.Incarnation, wl.Resume, t.authenticated())
	if err != nil {
		return false, err
	}
	s := t.newSession(raw, conn, wl.Incarnation)
	delivered, _, err := t.begin(p, s, wl.Incarnation, raw.RemoteAddr())
	if err != nil {
		return false, err
	}
	s.setResume(next, delivered)
	bw.Reset(conn)
	err = writeResume(bw, delivered)
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err == nil {
		err = p.out.setConnected(s, t.authenticated())
	}
	if err != nil {
		s.fail(err)
		p.in.end(s)
		close(s.exited)
		return false, fmt.Errorf("peer %q: %w", p.id, err)
	}
	t.noteIncarnation(p, wl.Incarnation)
	select { // a kick from before this stream is stale
	case <-p.out.kick:
	default:
	}
	t.event(p.id, "connected")
	t.log.Info("transport: stream up", "peer", printable(p.id), "dir", "out", "remote", raw.RemoteAddr().String(), "incarnation", wl.Incarnation, "resumed", resumed, "resume", wl.Resume)
	err = t.runSession(p, s, wl.Incarnation, "out")
	return true, err
}

// writeResume writes the RESUME frame and flushes.
func writeResume(w *bufio.Writer, seq uint64) error {
	if _, err := w.Write(appendSeqFrame(nil, frameResume, seq, nil)); err != nil {
		return err
	}
	return w.Flush()
}

// errDial marks a failure to open a connection that is not the peer's
// fault we could name: nobody listens, or the peer closed the connection
// before answering (it is going away, or over its handshake caps, which it
// logs itself). It is logged as "cannot reach peer", at Info once.
var errDial = errors.New("cannot dial")

// hungUp reports whether err says the other end closed or reset the
// connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ErrSlowPeer is logged when a peer does not read what is written to it
// within WriteTimeout; its connection is closed.
var ErrSlowPeer = errors.New("transport: peer not reading (slow reader)")

// ErrIdle is logged when nothing arrives on a connection within
// IdleTimeout (a half-open connection); it is closed.
var ErrIdle = errors.New("transport: connection idle (half-open?)")

func (t *TCP) writeErr(p *peer, err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: writing to %q blocked for %v: %v", ErrSlowPeer, p.id, t.cfg.WriteTimeout, err)
	}
	return fmt.Errorf("writing to %q: %w", p.id, err)
}

func (t *TCP) readErr(peer string, err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: nothing from %q for %v: %v", ErrIdle, peer, t.cfg.IdleTimeout, err)
	}
	return fmt.Errorf("reading from %q: %w", peer, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// deadline refreshes a read deadline at most every d/8, so that busy
// streams do not reset a timer per frame. If seen is set, every refresh
// stores monoNow in it.
type deadline struct {
	conn net.Conn
	d    time.Duration
	last time.Time
	seen *atomic.Int64
}

func (dl *deadline) refresh() error {
	now := time.Now()
	if dl.seen != nil {
		dl.seen.Store(int64(now.Sub(monoBase)))
	}
	if now.Sub(dl.last) < dl.d/8 {
		return nil
	}
	dl.last = now
	return dl.conn.SetReadDeadline(now.Add(dl.d))
}

// unreachable reports a failed dial to peer: at Info the first time in a
// row (failing false), then at Debug, since a peer that is down fails every
// retry.
func (t *TCP) unreachable(peer string, err error, failing bool) {
	if t.cfg.onConnError != nil {
		t.cfg.onConnError(peer, err)
	}
	level := slog.LevelDebug
	if !failing {
		level = slog.LevelInfo
	}
	t.log.Log(context.Background(), level, "transport: cannot reach peer, retrying", "peer", printable(peer), "err", err)
}
