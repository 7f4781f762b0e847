package transport

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The write path of a stream. Frames are encoded into the session's output
// buffer and written by whoever holds the session's write lock (wmu):
//
//   - Send itself, when it finds the lock free (the writer is idle) and the
//     previous Send to the peer was not within burstGap: it appends what
//     is queued and makes one non-blocking write attempt, so a message
//     usually leaves in the caller's goroutine, without waking another.
//     What the kernel does not take at once, everything when the lock is
//     busy, and every message of a burst are left to the writer goroutine
//     (a system call per message would cap a burst's throughput; the
//     writer batches it).
//   - The writer goroutine (writeStream), which appends everything queued
//     and writes it with blocking writes bounded by WriteTimeout: batches
//     form naturally while a write is under way. It also writes the ACKs
//     the reader asks for and the heartbeat.
//
// Whoever writes drains the whole queue into one buffer and writes it with
// one system call, and puts an ACK of what the reader delivered in front of
// it when that is news to the peer: an ACK rides with the DATA that goes
// out anyway, in the same segment (a REPLY carries the ACK of the messages
// delivered before the REQUEST it answers).
//
// Why Send's write cannot block: it takes wmu only with TryLock; the
// queue's lock (outPeer.mu) is held by others only for bookkeeping, never
// across I/O or deliver; setting the write deadline does not wait; and the
// write is a single write(2) on the socket, which the Go runtime keeps in
// non-blocking mode, through syscall.RawConn.Write with a callback that
// reports done after one attempt, so a full socket buffer returns EAGAIN
// (taken as "wrote 0") instead of parking. RawConn.Write takes the file
// descriptor's write lock, which only holders of wmu take on this
// connection (the reader only reads), so it is free. This holds whatever
// is in flight unacknowledged, so no bound on the socket buffer is needed.
//
// With TLS, or on a platform without non-blocking raw writes, only the
// writer goroutine writes: tls.Conn.Write may wait for the socket, and its
// reader may write too (a key update), so no such argument holds.

const (
	// maxBatch bounds the messages taken from the queue at one look.
	maxBatch = 128
	// outBufferSize is the size at which the output buffer is written out
	// before more is appended, and the capacity kept after a write.
	outBufferSize = 64 << 10
	// burstGap: a Send this soon after the previous one to the same peer
	// is part of a burst, which the writer goroutine batches.
	burstGap = 2 * time.Microsecond
)

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow returns monotonic nanoseconds.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// session is one established connection with a peer: the one stream each
// way between us. Its reader is the goroutine that made the handshake; its
// writer is a goroutine of its own.
type session struct {
	tcp     net.Conn // the TCP connection below conn (conn itself without TLS)
	conn    net.Conn
	stop    chan struct{}
	once    sync.Once
	err     error         // the first cause of the end; set before stop closes
	exited  chan struct{} // closed when the session's goroutines are done
	written atomic.Uint64 // highest seq handed to the write path
	// remoteInc is the incarnation of the peer this stream reaches.
	remoteInc uint64

	// The reading half.
	seen atomic.Int64 // monoNow when the last frame arrived
	// dmu is held by the reader across a deliver call of a message and
	// the recording of its seq, so that goodbye, which takes it before the
	// last ACK, acknowledges a delivery that was under way when the
	// transport closed.
	dmu    sync.Mutex
	busy   atomic.Bool   // the reader is inside deliver
	ackNow chan struct{} // capacity 1: acknowledge at once
	// ackTimer fires ackDelay after a delivery found it disarmed. The
	// reader arms it (armed false to true, then Reset); the writer disarms
	// it before it reads what to acknowledge, so no delivery is left
	// without a pending ACK.
	ackTimer *time.Timer
	armed    atomic.Bool

	// The writing half.
	wmu   sync.Mutex    // held while appending to or writing obuf
	next  uint64        // seq of the next message to append
	asked uint64        // seq up to which the last PING asked for an ACK
	acked atomic.Uint64 // the last seq we acknowledged to the peer; stored under wmu
	obuf  []byte        // encoded frames not yet written
	batch []outMsg
	bye   bool // GOODBYE was appended: nothing may follow it
	wd    writeDeadline
	raw   *rawWriter // non-blocking writes; nil if unavailable

	lastSend atomic.Int64 // monoNow at the previous Send (the end of its write)
}

// newSession returns the session of an established connection to
// incarnation inc of a peer: next is the seq of the first message to
// write, acked the last seq the peer knows we delivered.
func (t *TCP) newSession(tcp, conn net.Conn, inc uint64) *session {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	s := &session{
		tcp:       tcp,
		conn:      conn,
		remoteInc: inc,
		stop:      make(chan struct{}),
		exited:    make(chan struct{}),
		ackNow:    make(chan struct{}, 1),
		ackTimer:  tm,
		batch:     make([]outMsg, 0, maxBatch),
		wd:        writeDeadline{conn: conn, d: t.cfg.WriteTimeout},
	}
	if t.cfg.TLS == nil {
		s.raw = newRawWriter(tcp)
	}
	s.seen.Store(monoNow())
	return s
}

// setResume sets where the write path starts: the seq of the next message
// to write, and the last seq the peer knows we delivered. Called before
// the writer starts.
func (s *session) setResume(next, acked uint64) {
	s.next, s.asked = next, next-1
	s.acked.Store(acked)
	s.written.Store(next - 1)
}

// fail records the first error and closes the connection. It does not
// block: the TCP connection is closed first, so closing TLS over it sends
// nothing.
func (s *session) fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.stop)
		_ = s.tcp.Close()
		_ = s.conn.Close()
	})
}

func (s *session) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// live reports whether s is open and heard from within window (a peer
// sends at least a heartbeat every HeartbeatInterval), or is not reading
// because it is inside deliver.
func (s *session) live(window time.Duration) bool {
	if s.stopped() {
		return false
	}
	return s.busy.Load() || monoNow()-s.seen.Load() < int64(window)
}

// askAck wakes the writer to acknowledge at once.
func (s *session) askAck() {
	select {
	case s.ackNow <- struct{}{}:
	default:
	}
}

// appendAck appends an ACK of what the reader delivered if that is news
// to the peer, or if force. The caller holds wmu.
func (t *TCP) appendAck(p *peer, s *session, force bool) {
	if last := p.in.last.Load(); last > s.acked.Load() || force {
		s.obuf = appendSeqFrame(s.obuf, frameAck, last, nil)
		s.acked.Store(last)
	}
}

// fill appends queued messages to obuf until the queue is drained or obuf
// holds outBufferSize bytes; it reports whether messages remain. It asks
// for an ACK (a PING) after writing more while what is held for the peer
// has reached a quarter of QueueBytes. The caller holds wmu.
func (t *TCP) fill(p *peer, s *session) (more bool) {
	for len(s.obuf) < outBufferSize {
		var ask bool
		s.batch, ask = p.out.pending(s.next, s.batch[:0], maxBatch)
		if len(s.batch) == 0 {
			return false
		}
		var n uint64
		for _, m := range s.batch {
			s.obuf = appendSeqFrame(s.obuf, frameData, m.seq, m.body)
			n += uint64(frameLenSize + seqFrameSize + len(m.body))
		}
		p.out.msgs.Add(uint64(len(s.batch)))
		p.out.byts.Add(n)
		s.next = s.batch[len(s.batch)-1].seq + 1
		clear(s.batch)
		w := s.next - 1
		s.written.Store(w)
		if ask && w > s.asked {
			s.obuf = append(s.obuf, pingFrame...)
			s.asked = w
		}
	}
	return true
}

// consume drops the first n bytes of obuf, which were written.
func (s *session) consume(n int) {
	s.obuf = s.obuf[:copy(s.obuf, s.obuf[n:])]
	if len(s.obuf) == 0 && cap(s.obuf) > 2*outBufferSize {
		s.obuf = nil
	}
}

// tryWrite is the body of writeDirect. The caller holds wmu.
func (t *TCP) tryWrite(p *peer, s *session) bool {
	if s.stopped() || s.bye {
		return false
	}
	t.appendAck(p, s, false)
	more := t.fill(p, s)
	if err := s.wd.refresh(); err != nil {
		return false // the writer meets the error again and ends the session
	}
	n, err := s.raw.try(s.obuf)
	s.consume(n)
	if err != nil {
		return false // likewise: closing the connection is the writer's job
	}
	return !more && len(s.obuf) == 0
}

// writeDirect is Send's attempt to write what is queued itself, without
// blocking (see the argument above). It reports whether it left nothing for
// the writer goroutine. On an error it leaves everything to the writer,
// which meets the error again and closes the session: closing a connection
// waits for its other users to let go, which Send must not.
func (t *TCP) writeDirect(p *peer, s *session) bool {
	if s.raw == nil {
		return false
	}
	now := monoNow()
	if prev := s.lastSend.Swap(now); now-prev < int64(burstGap) || !s.wmu.TryLock() {
		return false
	}
	defer func() {
		s.lastSend.Store(monoNow()) // a burst's gaps count from this write's end
		s.wmu.Unlock()
	}()
	return t.tryWrite(p, s)
}

// flushOut writes everything queued, after an ACK if one is news to the
// peer (or if force), blocking. The caller holds wmu.
func (t *TCP) flushOut(p *peer, s *session, force bool) error {
	for {
		t.appendAck(p, s, force)
		force = false
		more := t.fill(p, s)
		if len(s.obuf) > 0 {
			if err := s.wd.refresh(); err != nil {
				return err
			}
			n, err := s.conn.Write(s.obuf)
			s.consume(n)
			if err != nil {
				return t.writeErr(p, err)
			}
		}
		if !more {
			return nil
		}
	}
}

// writeStream writes what Send leaves to it, and the ACKs the reader asks
// for, until the session ends; every HeartbeatInterval it repeats the last
// ACK, so that the peer hears from us while the stream is idle. When the
// transport closes it says goodbye.
func (t *TCP) writeStream(p *peer, s *session) {
	beat := time.NewTicker(t.cfg.HeartbeatInterval)
	defer beat.Stop()
	defer s.ackTimer.Stop()
	force := false
	for {
		s.wmu.Lock()
		err := t.flushOut(p, s, force)
		if err != nil {
			s.fail(err) // under wmu: nobody writes after a failed write
		}
		s.wmu.Unlock()
		if err != nil {
			return
		}
		force = false
		select {
		case <-p.out.wake:
		case <-s.ackNow:
		case <-s.ackTimer.C:
			s.armed.Store(false) // before loading what to acknowledge: see session
		case <-beat.C:
			force = true
		case <-s.stop:
			return
		case <-t.done:
			t.goodbye(p, s)
			return
		}
	}
}

// goodbye ends a healthy stream as the transport closes: it writes what is
// queued and an ACK of what was delivered, the delivery under way included
// (the reader begins no other), then GOODBYE. The reader goes on reading,
// delivering nothing, until the peer closes the connection, so that
// closing it does not reset it with unread bytes.
func (t *TCP) goodbye(p *peer, s *session) {
	// Wait for the delivery under way, if any, to be recorded, so that
	// the ACK below covers it.
	s.dmu.Lock()
	//lint:ignore SA2001 waiting for the reader to let go is the point
	s.dmu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.stopped() {
		return
	}
	err := t.flushOut(p, s, false)
	if err == nil {
		s.bye = true
		s.obuf = append(s.obuf, goodbyeFrame...)
		err = s.wd.refresh()
	}
	for err == nil && len(s.obuf) > 0 {
		var n int
		n, err = s.conn.Write(s.obuf)
		s.consume(n)
		if err != nil {
			err = t.writeErr(p, err)
		}
	}
	if err != nil {
		s.fail(err) // under wmu: nobody writes after a failed write
	}
}

// appendSeqFrame appends a frame of type typ holding seq, followed by msg
// (which is empty for an ACK).
func appendSeqFrame(b []byte, typ byte, seq uint64, msg []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(seqFrameSize+len(msg)))
	b = append(b, typ)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, msg...)
}

// pingFrame and goodbyeFrame are whole PING and GOODBYE frames.
var (
	pingFrame    = []byte{0, 0, 0, 1, framePing}
	goodbyeFrame = []byte{0, 0, 0, 1, frameGoodbye}
)

// writeDeadline keeps a connection's write deadline between d and 9/8 d
// ahead, so that busy streams do not reset a timer per write: a write
// blocked for d (at most an eighth more) fails.
type writeDeadline struct {
	conn net.Conn
	d    time.Duration
	at   time.Time
}

func (wd *writeDeadline) refresh() error {
	now := time.Now()
	if wd.at.Sub(now) >= wd.d {
		return nil
	}
	wd.at = now.Add(wd.d + wd.d/8)
	return wd.conn.SetWriteDeadline(wd.at)
}
