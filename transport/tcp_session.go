package transport

import (
	"bufio"
	"errors"
	"fmt"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Acknowledgement policy. An ACK of its own per message would double the
// segments and system calls of a stream, so ACKs are cumulative and ride
// with the DATA we send anyway (see the write path); one goes out on its
// own only after ackEvery deliveries, when the peer asks with a PING (it
// does when a quarter of its queue awaits an ACK), or ackDelay after the
// first delivery not yet acknowledged. The ACK is off the path of every
// message: it only lets the peer free its resend queue.
const (
	ackEvery = 64
	ackDelay = 5 * time.Millisecond
)

// streamBuffer is the size of a stream's read buffer, allocated once its
// handshake is done.
const streamBuffer = 64 << 10

// runSession runs an established session with incarnation inc of p until
// it ends: the writer on a goroutine of its own, the reader on the calling
// one. It then delivers PeerDown (when due), forgets the session and
// returns the cause of its end (nil if it was stopped).
func (t *TCP) runSession(p *peer, s *session, inc uint64, dir string) error {
	writerDone := make(chan struct{})
	if !t.spawn(func() {
		defer close(writerDone)
		t.writeStream(p, s)
	}) {
		close(writerDone)
		s.fail(ErrClosed)
	}
	err := t.readStream(p, s, bufio.NewReaderSize(s.conn, streamBuffer))
	s.fail(err)
	<-writerDone
	if errors.Is(s.err, errGoodbye) {
		t.peerLeft(p, dir, inc)
	}
	t.peerDown(p, inc)
	_ = p.out.setConnected(nil, false)
	p.in.end(s)
	close(s.exited)
	return s.err
}

// readStream handles the peer's frames until the stream breaks or s is
// stopped (then it returns nil): it delivers DATA, applies ACKs, answers
// PINGs and ends at GOODBYE.
func (t *TCP) readStream(p *peer, s *session, br *bufio.Reader) error {
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
	asked := last // last seq an immediate ACK was asked for (see acks)
	for {
		if err := dl.refresh(); err != nil {
			return stopped(err)
		}
		body, err := readFrame(br, t.cfg.MaxFrameSize, buf)
		if err != nil {
			return stopped(t.readErr(p.id, err))
		}
		if cap(body) > cap(buf) && cap(body) <= streamBuffer {
			buf = body[:0]
		}
		typ, seq, rest, err := parseStreamFrame(body)
		switch {
		case err != nil:
			return fmt.Errorf("%w from %q", err, p.id)
		case typ == frameGoodbye:
			return errGoodbye
		case typ == frameAck:
			if err := t.acked(p, s, seq); err != nil {
				return err
			}
			continue
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
		s.dmu.Lock()
		ok := t.deliver(m, s.stop)
		if ok {
			last = seq
			ip.last.Store(seq)
			ip.msgs.Add(1)
			ip.byts.Add(uint64(frameLenSize + len(body)))
		}
		s.dmu.Unlock()
		s.busy.Store(false)
		if !ok {
			if s.stopped() {
				return nil
			}
			continue // we are leaving (see Close); the peer keeps m
		}
		// What deliver sent the peer (a REPLY) acknowledged what came
		// before m; m's ACK rides with the next write, whatever it is.
		switch {
		case seq-max(asked, s.acked.Load()) >= ackEvery:
			s.askAck()
			asked = seq
		case !s.armed.Load() && s.armed.CompareAndSwap(false, true):
			s.ackTimer.Reset(ackDelay)
		}
	}
}

// acked applies the peer's ACK of seq to what we hold for it.
func (t *TCP) acked(p *peer, s *session, seq uint64) error {
	if w := s.written.Load(); seq > w {
		return fmt.Errorf("%w: %q acknowledged %d, only %d sent", ErrProtocol, p.id, seq, w)
	}
	p.out.mu.Lock()
	if seq >= p.out.base() {
		p.out.ackTo(seq)
	}
	p.out.mu.Unlock()
	return nil
}
