package transporttest

import (
	"context"
	"errors"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// testFlushWaits: when Flush returns nil, every message sent before it has
// been delivered; with nothing outstanding it returns nil.
func testFlushWaits(s *suite) {
	const count = 50
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	if err := c.tr.Flush(s.ctx()); err != nil {
		s.t.Errorf("%s: Flush with nothing sent: %v", c.id, err)
	}
	ab, ac := s.newStream(a, b.id, false), s.newStream(a, c.id, false)
	for _, st := range []*stream{ab, ac} {
		if err := st.sendN(s.ctx(), count); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := a.tr.Flush(s.ctx()); err != nil {
		s.t.Fatalf("%s: Flush: %v", a.id, err)
	}
	for _, st := range []*stream{ab, ac} {
		if got := s.node(st.to).got(st); got != st.accepted() {
			s.t.Errorf("%s: Flush returned when %s had received %d of the %d messages sent before it", a.id, st.to, got, st.accepted())
		}
	}
	s.report()
}

// testFlushContext: Flush waiting for a message that cannot be delivered
// (the receiver's deliver blocks) returns ctx's error when ctx ends.
func testFlushContext(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	g := s.stopReading(b, a)
	st := s.newStream(a, b.id, false)
	if err := st.sendN(s.ctx(), 2); err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := async(func() error { return a.tr.Flush(ctx) })
	cancel()
	err := await(s, "Flush to return after its ctx was cancelled", done)
	switch {
	case err == nil:
		s.t.Errorf("%s: Flush returned nil while %s's deliver blocked before its messages", a.id, b.id)
	case !errors.Is(err, context.Canceled):
		s.t.Errorf("%s: Flush with a cancelled ctx: %v, want context.Canceled", a.id, err)
	}
	g.open()
	s.waitFor("the messages after the peer reads again", func() bool { return b.hasAll(st) })
	s.report()
}

// testCloseFlushes: when Close returns nil, what was sent before it has
// been delivered; a second Close returns nil.
func testCloseFlushes(s *suite) {
	const count = 50
	ns := s.startAll()
	a, b := ns[0], ns[1]
	st := s.newStream(a, b.id, false)
	if err := st.sendN(s.ctx(), count); err != nil {
		s.t.Fatal(err)
	}
	if err := a.closeWithin(s.timeout, s.timeout); err != nil {
		s.t.Fatalf("%s: Close: %v", a.id, err)
	}
	if got := b.got(st); got != count {
		s.t.Errorf("%s: Close returned nil when %s had received %d of the %d messages sent before it", a.id, b.id, got, count)
	}
	if err := a.tr.Close(s.ctx()); err != nil {
		s.t.Errorf("%s: a second Close: %v, want nil", a.id, err)
	}
	s.report()
}

// testCloseWaitsForDeliver: Close does not return while a deliver call
// runs, and no deliver call starts after it returns.
func testCloseWaitsForDeliver(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	g := s.stopReading(b, a)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	done := async(func() error {
		err := b.tr.Close(ctx)
		b.closeReturned.Store(true)
		return err
	})
	var err error
	select {
	case err = <-done:
		s.t.Errorf("%s: Close returned while a deliver call was running", b.id)
		g.open()
	case <-time.After(chance):
		g.open()
		err = await(s, "Close to return once deliver returned", done)
	}
	if err != nil {
		s.t.Errorf("%s: Close: %v", b.id, err)
	}
	// More for the closed peer: none may be delivered.
	st := s.newStream(a, b.id, true)
	if err := st.send(lamportmutex.Request, 0); err != nil {
		s.t.Errorf("%s: Send to a peer that closed: %v (it is held, not refused)", a.id, err)
	}
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), chance)
	defer cancelFlush()
	_ = a.tr.Flush(flushCtx) // a chance to deliver what it must not
	s.report()
}

// testAfterClose: after Close, Send and Flush return errors wrapping
// ErrClosed, Start errors, Quarantine is a no-op, a second Close returns
// nil.
func testAfterClose(s *suite) {
	a, b, c := s.node(s.ids[0]), s.node(s.ids[1]), s.node(s.ids[2])
	a.start()
	b.start()
	s.waitUp(a, b)
	if err := a.closeWithin(s.timeout, s.timeout); err != nil {
		s.t.Fatalf("%s: Close: %v", a.id, err)
	}
	if err := a.tr.Close(s.ctx()); err != nil {
		s.t.Errorf("%s: a second Close: %v, want nil", a.id, err)
	}
	m := lamportmutex.Message{Kind: lamportmutex.Request, From: a.id, To: b.id, Clock: 1, Incarnation: b.inc}
	if err := a.tr.Send(m); !errors.Is(err, lamportmutex.ErrClosed) {
		s.t.Errorf("%s: Send after Close: %v, want an error wrapping ErrClosed", a.id, err)
	}
	if err := a.tr.Flush(s.ctx()); !errors.Is(err, lamportmutex.ErrClosed) {
		s.t.Errorf("%s: Flush after Close: %v, want an error wrapping ErrClosed", a.id, err)
	}
	a.tr.Quarantine(b.id, b.inc, errors.New("transporttest: after close"))
	// c was never started.
	if err := c.closeWithin(s.timeout, s.timeout); err != nil {
		s.t.Fatalf("%s: Close before Start: %v", c.id, err)
	}
	if err := c.tr.Start(c.deliver); err == nil {
		s.t.Errorf("%s: Start after Close returned nil", c.id)
	}
	s.report()
}

// testHeldForClosedPeer: what is sent to a peer that closed is held, and
// counts toward the bound: Send refuses with ErrQueueFull, never blocks.
func testHeldForClosedPeer(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	if err := b.closeWithin(s.timeout, s.timeout); err != nil {
		s.t.Fatalf("%s: Close: %v", b.id, err)
	}
	s.fill(s.newStream(a, b.id, true), lamportmutex.Release, payloadSize(a))
	s.report()
}

// quarantined notes that n's Quarantine of inc of peer returned.
func (n *node) quarantined(peer string, inc uint64) {
	pl := n.peers[peer]
	pl.mu.Lock()
	pl.quarantine = inc
	pl.mu.Unlock()
}

// afterQuarantine returns how many messages of the quarantined
// incarnation of peer n received after Quarantine returned.
func (n *node) afterQuarantine(peer string) int {
	pl := n.peers[peer]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.afterQuar
}

// testQuarantine: after Quarantine (called from inside deliver, as the
// Mutex does) nothing more from that incarnation is delivered, beyond one
// message the transport had already handed to delivery; other peers are
// not affected; Quarantine of an unknown peer is a no-op.
func testQuarantine(s *suite) {
	const before, after = 20, 50
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	b.tr.Quarantine("nobody", 1, errors.New("transporttest: unknown peer"))
	b.onDeliver(func(m lamportmutex.Message) {
		if m.From == a.id && m.Kind != lamportmutex.PeerUp && m.Kind != lamportmutex.PeerDown && seqOf(m.Clock) == before {
			b.tr.Quarantine(a.id, a.inc, errors.New("transporttest: refused"))
			b.quarantined(a.id, a.inc)
		}
	})
	st := s.newStream(a, b.id, true)
	if err := st.sendN(s.ctx(), before); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the messages before the quarantine", func() bool { return b.got(st) >= before })
	for range after {
		_ = st.send(lamportmutex.Data, 16) // may be refused: the peer is gone for a
	}
	cb := s.newStream(c, b.id, false)
	if err := cb.sendN(s.ctx(), 10); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("p3's messages at p2 after p2 quarantined p1", func() bool { return b.hasAll(cb) })
	flushCtx, cancel := context.WithTimeout(context.Background(), chance)
	defer cancel()
	_ = a.tr.Flush(flushCtx) // a chance to deliver what it must not
	if n := b.afterQuarantine(a.id); n > 1 {
		s.t.Errorf("%s delivered %d messages of %s's quarantined incarnation after Quarantine returned", b.id, n, a.id)
	}
	s.report()
}
