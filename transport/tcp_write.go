package transport

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The write path of an outbound stream. Frames are encoded into the
// session's output buffer and written by whoever holds the session's write
// lock (wmu):
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
//     form naturally while a write is under way. It also sends PINGs.
//
// Why Send's write cannot block: it takes wmu only with TryLock; the
// queue's lock (outPeer.mu) is held by others only for bookkeeping, never
// across I/O or deliver; setting the write deadline does not wait; and the
// write is a single write(2) on the socket, which the Go runtime keeps in
// non-blocking mode, through syscall.RawConn.Write with a callback that
// reports done after one attempt, so a full socket buffer returns EAGAIN
// (taken as "wrote 0") instead of parking. RawConn.Write takes the file
// descriptor's write lock, which only holders of wmu take on this
// connection (the ACK reader only reads), so it is free. This holds
// whatever is in flight unacknowledged, so no bound on the socket buffer
// is needed.
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

// outSession is one established outbound stream.
type outSession struct {
	tcp     net.Conn // the TCP connection below conn (conn itself without TLS)
	conn    net.Conn
	stop    chan struct{}
	once    sync.Once
	err     error
	written atomic.Uint64 // highest seq handed to the write path
	// remoteInc is the incarnation of the peer this stream reaches.
	remoteInc uint64

	wmu   sync.Mutex // held while appending to or writing obuf
	next  uint64     // seq of the next message to append
	asked uint64     // seq up to which the last PING asked for an ACK
	obuf  []byte     // encoded frames not yet written
	batch []outMsg
	bye   bool // GOODBYE was appended: nothing may follow it
	wd    writeDeadline
	raw   *rawWriter // non-blocking writes; nil if unavailable

	lastSend atomic.Int64 // monoNow at the previous Send (the end of its write)
}

func (t *TCP) newOutSession(tcp, conn net.Conn, next uint64) *outSession {
	s := &outSession{
		tcp:   tcp,
		conn:  conn,
		stop:  make(chan struct{}),
		next:  next,
		asked: next - 1,
		batch: make([]outMsg, 0, maxBatch),
		wd:    writeDeadline{conn: conn, d: t.cfg.WriteTimeout},
	}
	s.written.Store(next - 1)
	return s
}

// fail records the first error and closes the connection. It does not
// block: the TCP connection is closed first, so closing TLS over it sends
// nothing.
func (s *outSession) fail(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.stop)
		_ = s.tcp.Close()
		_ = s.conn.Close()
	})
}

func (s *outSession) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// fill appends queued messages to obuf until the queue is drained or obuf
// holds outBufferSize bytes; it reports whether messages remain. It asks
// for an ACK (a PING) after writing more while what is held for the peer
// has reached a quarter of QueueBytes. The caller holds wmu.
func (t *TCP) fill(p *peer, s *outSession) (more bool) {
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
func (s *outSession) consume(n int) {
	s.obuf = s.obuf[:copy(s.obuf, s.obuf[n:])]
	if len(s.obuf) == 0 && cap(s.obuf) > 2*outBufferSize {
		s.obuf = nil
	}
}

// writeDirect is Send's attempt to write what is queued itself, without
// blocking (see the argument above). It reports whether it left nothing for
// the writer goroutine. On an error it leaves everything to the writer,
// which meets the error again and closes the session: closing a connection
// waits for its other users to let go, which Send must not.
func (t *TCP) writeDirect(p *peer, s *outSession) bool {
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
	if s.stopped() || s.bye {
		return false
	}
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

// flushOut writes everything queued, blocking. The caller holds wmu.
func (t *TCP) flushOut(p *peer, s *outSession) error {
	for {
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

// writeStream writes what Send leaves to it until the session ends, and
// pings while idle.
func (t *TCP) writeStream(p *peer, s *outSession) error {
	ping := time.NewTicker(t.cfg.HeartbeatInterval)
	defer ping.Stop()
	for {
		s.wmu.Lock()
		err := t.flushOut(p, s)
		if err != nil {
			s.fail(err) // under wmu: nobody writes after a failed write
		}
		s.wmu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-p.out.wake:
		case <-ping.C:
			s.wmu.Lock()
			s.obuf = append(s.obuf, pingFrame...)
			s.wmu.Unlock()
		case <-s.stop:
			return nil
		case <-t.done:
			return t.goodbyeOut(p, s)
		}
	}
}

// errSaidGoodbye is what writeStream returns after it sent GOODBYE.
var errSaidGoodbye = errors.New("said goodbye")

// goodbyeOut ends a healthy outbound stream as the transport closes: it
// writes what is queued, then GOODBYE, and returns errSaidGoodbye.
func (t *TCP) goodbyeOut(p *peer, s *outSession) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.stopped() {
		return nil
	}
	err := t.flushOut(p, s)
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
		return err
	}
	return errSaidGoodbye
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
