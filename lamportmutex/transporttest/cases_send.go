package transporttest

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// startAll starts every current node and waits until each has PeerUp from
// every other: PeerUp comes at first contact, without any message.
func (s *suite) startAll() []*node {
	s.t.Helper()
	ns := make([]*node, len(s.ids))
	for i, id := range s.ids {
		ns[i] = s.node(id)
		ns[i].start()
	}
	s.waitUp(ns...)
	return ns
}

// testIdentity: ID, a non-zero Incarnation, a positive MaxPayload, PeerUp
// at first contact naming the peer's incarnation, and Start only once.
func testIdentity(s *suite) {
	for _, id := range s.ids {
		n := s.node(id)
		if n.inc == 0 {
			s.t.Errorf("%s: Incarnation is 0", id)
		}
		if n.tr.MaxPayload() <= 0 {
			s.t.Errorf("%s: MaxPayload is %d", id, n.tr.MaxPayload())
		}
	}
	ns := s.startAll()
	for _, n := range ns {
		if err := n.tr.Start(func(lamportmutex.Message) {}); err == nil {
			s.t.Errorf("%s: a second Start returned nil", n.id)
		}
	}
}

// testSendRefuses: Send errors for an unknown peer, the sender itself, a
// From that is not ID and a payload above MaxPayload, and delivers none of
// them.
func testSendRefuses(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	over := make([]byte, a.tr.MaxPayload()+1)
	bad := map[string]lamportmutex.Message{
		"an unknown peer":           {Kind: lamportmutex.Request, From: a.id, To: "nobody", Clock: 1, Incarnation: 1},
		"the sender itself":         {Kind: lamportmutex.Request, From: a.id, To: a.id, Clock: 1, Incarnation: a.inc},
		"a From that is not ID":     {Kind: lamportmutex.Request, From: ns[2].id, To: b.id, Clock: 1, Incarnation: b.inc},
		"an empty From":             {Kind: lamportmutex.Request, To: b.id, Clock: 1, Incarnation: b.inc},
		"a payload over MaxPayload": {Kind: lamportmutex.Data, From: a.id, To: b.id, Clock: 1, Payload: over, Incarnation: b.inc},
	}
	for what, m := range bad {
		if err := a.tr.Send(m); err == nil {
			s.t.Errorf("%s: Send to %s returned nil", a.id, what)
		}
	}
	// A good message after them: once it arrives, a refused one that was
	// queued all the same would have arrived (per-pair FIFO) and been
	// reported by record as never accepted.
	for _, n := range ns[1:] {
		st := s.newStream(a, n.id, false)
		if err := st.sendN(s.ctx(), 1); err != nil {
			s.t.Fatal(err)
		}
		s.waitFor("the message after the refused ones", func() bool { return n.hasAll(st) })
	}
	s.report()
}

// testMaxPayload: a payload of exactly MaxPayload is accepted and arrives
// intact.
func testMaxPayload(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	st := s.newStream(a, b.id, false)
	if err := st.send(lamportmutex.Release, a.tr.MaxPayload()); err != nil {
		s.t.Fatalf("%s: Send of a payload of MaxPayload (%d bytes): %v", a.id, a.tr.MaxPayload(), err)
	}
	s.waitFor("the message with the largest payload", func() bool { return b.hasAll(st) })
	s.report()
}

// testPeerUpFirst: messages sent to a peer before it starts arrive after
// the sender's PeerUp, at first contact.
func testPeerUpFirst(s *suite) {
	a, b, c := s.node(s.ids[0]), s.node(s.ids[1]), s.node(s.ids[2])
	a.start()
	c.start()
	ab := s.newStream(a, b.id, false)
	cb := s.newStream(c, b.id, false)
	for _, st := range []*stream{ab, cb} {
		if err := st.sendN(s.ctx(), 5); err != nil {
			s.t.Fatal(err)
		}
	}
	b.start()
	s.waitFor("the messages sent before p2 started", func() bool { return b.hasAll(ab) && b.hasAll(cb) })
	s.waitUp(a, b, c)
	s.report()
}

// testReliableFIFO: every ordered pair carries two concurrent streams of
// every kind at once; each arrives complete, in order, exactly once,
// unaltered, after the sender's PeerUp, and no PeerUp repeats.
func testReliableFIFO(s *suite) {
	const perStream = 200
	ns := s.startAll()
	var streams []*stream
	for _, from := range ns {
		for _, to := range ns {
			if from != to {
				streams = append(streams, s.newStream(from, to.id, false), s.newStream(from, to.id, false))
			}
		}
	}
	s.sendConcurrently(streams, perStream)
	for _, st := range streams {
		to := s.node(st.to)
		s.waitFor(fmt.Sprintf("%d messages of stream %d (%s to %s)", perStream, st.id, st.from.id, st.to),
			func() bool { return to.hasAll(st) })
	}
	for _, n := range ns {
		for _, m := range ns {
			if n != m && len(n.ups(m.id)) != 1 {
				s.t.Errorf("%s: PeerUps from %s: %v, want one of incarnation %d", n.id, m.id, n.ups(m.id), m.inc)
			}
		}
	}
	s.report()
}

// sendConcurrently sends count messages on every stream, each stream on a
// goroutine of its own, and waits for them all.
func (s *suite) sendConcurrently(streams []*stream, count int) {
	s.t.Helper()
	ctx := s.ctx()
	var wg sync.WaitGroup
	errs := make(chan error, len(streams))
	for _, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.sendN(ctx, count)
		}()
	}
	await(s, "the senders (a Send or a Flush hung)", async(func() struct{} { wg.Wait(); return struct{}{} }))
	close(errs)
	for err := range errs {
		if err != nil {
			s.t.Error(err)
		}
	}
}

// testNoOverlap: two peers send to a third, whose deliver yields on every
// call; no two calls for one peer ever run at once.
func testNoOverlap(s *suite) {
	const perStream = 200
	ns := s.startAll()
	c := ns[2]
	c.onDeliver(func(lamportmutex.Message) {
		for range 20 {
			runtime.Gosched()
		}
	})
	streams := []*stream{s.newStream(ns[0], c.id, false), s.newStream(ns[1], c.id, false)}
	s.sendConcurrently(streams, perStream)
	for _, st := range streams {
		s.waitFor(fmt.Sprintf("the messages of %s", st.from.id), func() bool { return c.hasAll(st) })
	}
	s.report()
}

// testBlockedDeliver: while deliver blocks on a message from one peer,
// messages from another peer are still delivered, and the blocked peer's
// own sends still go out.
func testBlockedDeliver(s *suite) {
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	g := s.newGate()
	c.onDeliver(func(m lamportmutex.Message) {
		if m.From == a.id && m.Kind != lamportmutex.PeerUp && m.Kind != lamportmutex.PeerDown {
			g.wait()
		}
	})
	fromA := s.newStream(a, c.id, false)
	if err := fromA.sendN(s.ctx(), 3); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the first message from p1 at p3", func() bool { return c.got(fromA) >= 1 })
	fromB := s.newStream(b, c.id, false)
	cToB := s.newStream(c, b.id, false)
	for _, st := range []*stream{fromB, cToB} {
		if err := st.sendN(s.ctx(), 3); err != nil {
			s.t.Fatal(err)
		}
	}
	s.waitFor("p2's messages at p3 while p3's deliver blocks on p1's", func() bool { return c.hasAll(fromB) })
	s.waitFor("p3's messages at p2 while p3's deliver blocks on p1's", func() bool { return b.hasAll(cToB) })
	if c.got(fromA) != 1 {
		s.t.Errorf("p3 received %d messages from p1 while its deliver blocked on the first", c.got(fromA))
	}
	g.open()
	s.waitFor("p1's messages at p3 after the block", func() bool { return c.hasAll(fromA) })
	s.report()
}

// testSendFromDeliver: deliver sends, to the peer it is delivering from
// and to a third, for many rounds: no deadlock.
func testSendFromDeliver(s *suite) {
	const rounds = 100
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	ab, ba, bc := s.newStream(a, b.id, false), s.newStream(b, a.id, false), s.newStream(b, c.id, false)
	ctx := s.ctx()
	answer := func(sts ...*stream) func(lamportmutex.Message) {
		return func(m lamportmutex.Message) {
			if m.Kind == lamportmutex.PeerUp || m.Kind == lamportmutex.PeerDown || seqOf(m.Clock) >= rounds {
				return
			}
			for _, st := range sts {
				if err := st.sendN(ctx, 1); err != nil {
					s.violate("send from inside deliver: %v", err)
				}
			}
		}
	}
	a.onDeliver(answer(ab))
	b.onDeliver(answer(ba, bc))
	if err := ab.sendN(ctx, 1); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the ping-pong between p1 and p2, sent from inside deliver",
		func() bool { return b.got(ab) >= rounds && a.got(ba) >= rounds-1 && c.got(bc) >= rounds-1 })
	s.report()
}

// fill sends messages of kind with payloads of size from st until Send
// refuses one, on a goroutine: Send must return, never block. It returns
// how many Send accepted, and fails the test unless the refusal wraps
// ErrQueueFull. It gives up after most bytes: a transport whose bound
// per peer is larger fails.
func (s *suite) fill(st *stream, kind lamportmutex.Kind, size int) int {
	s.t.Helper()
	const most = 128 << 20
	type result struct {
		n   int
		err error
	}
	res := await(s, fmt.Sprintf("Send of %v to return (Send blocked)", kind), async(func() result {
		for n := 0; n*size < most; n++ {
			if err := st.send(kind, size); err != nil {
				return result{n, err}
			}
		}
		return result{most / size, nil}
	}))
	switch {
	case res.err == nil:
		s.t.Fatalf("%s accepted %d bytes of %v for %s, which does not read, without refusing any", st.from.id, most, kind, st.to)
	case !errors.Is(res.err, lamportmutex.ErrQueueFull):
		s.t.Fatalf("%s: Send of %v to a full queue: %v, want an error wrapping ErrQueueFull", st.from.id, kind, res.err)
	}
	return res.n
}

// stopReading makes n's deliver block on every message from id until the
// returned gate opens, and waits until one blocks: n no longer reads id.
func (s *suite) stopReading(n *node, from *node) *gate {
	s.t.Helper()
	g := s.newGate()
	n.onDeliver(func(m lamportmutex.Message) {
		if m.From == from.id && m.Kind != lamportmutex.PeerDown && m.Kind != lamportmutex.PeerUp {
			g.wait()
		}
	})
	st := s.newStream(from, n.id, false)
	if err := st.sendN(s.ctx(), 1); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor(fmt.Sprintf("the first message from %s at %s", from.id, n.id), func() bool { return n.hasAll(st) })
	return g
}

// payloadSize is the payload the queue-bound subtests send.
func payloadSize(n *node) int { return min(n.tr.MaxPayload(), 64<<10) }

// testSendNeverBlocks: to a peer that does not read, Send refuses with
// ErrQueueFull rather than block; what it accepted arrives in order once
// the peer reads again, and Flush then returns.
func testSendNeverBlocks(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	g := s.stopReading(b, a)
	st := s.newStream(a, b.id, false)
	s.fill(st, lamportmutex.Release, payloadSize(a))
	g.open()
	s.wantNoneOfTheRefused(a, b, st)
	s.report()
}

// wantNoneOfTheRefused checks, once b reads again, that b gets exactly
// what a's Sends on st accepted. The next accepted message takes a
// refused one's place in the stream: had a refused message been queued
// all the same, it would arrive twice.
func (s *suite) wantNoneOfTheRefused(a, b *node, st *stream) {
	s.t.Helper()
	if err := st.sendN(s.ctx(), 1); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("every accepted message after the peer reads again", func() bool { return b.hasAll(st) })
	if err := a.tr.Flush(s.ctx()); err != nil {
		s.t.Errorf("%s: Flush after everything was delivered: %v", a.id, err)
	}
	if got := b.got(st); got != st.accepted() {
		s.t.Errorf("%s received %d messages; Send accepted %d", b.id, got, st.accepted())
	}
}

// testSendBatch: the messages of one Send arrive in order, among those of
// single Sends; a call that names two peers, holds a message Send refuses,
// or does not fit the queue whole is refused whole, queueing none of its
// messages. A refused call's messages reuse the next places of their
// streams, so had one been queued all the same, it would arrive twice.
func testSendBatch(s *suite) {
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	ab, ac := s.newStream(a, b.id, false), s.newStream(a, c.id, false)
	all := []lamportmutex.Kind{lamportmutex.Release, lamportmutex.Request, lamportmutex.Data, lamportmutex.Reply}
	for range 10 {
		if err := ab.sendBatch(all, 16); err != nil {
			s.t.Fatalf("%s: Send of %d messages to %s: %v", a.id, len(all), b.id, err)
		}
		if err := ab.sendN(s.ctx(), 1); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := ab.sendBatch(nil, 0); err != nil {
		s.t.Errorf("%s: Send of no message: %v", a.id, err)
	}
	mixed := []lamportmutex.Message{ab.message(ab.next, lamportmutex.Request, 0), ac.message(ac.next, lamportmutex.Request, 0)}
	if err := a.tr.Send(mixed...); err == nil {
		s.t.Errorf("%s: Send of one message to %s and one to %s returned nil", a.id, b.id, c.id)
	}
	bad := []lamportmutex.Message{ab.message(ab.next, lamportmutex.Request, 0), ab.message(ab.next+1, lamportmutex.Data, a.tr.MaxPayload()+1)}
	if err := a.tr.Send(bad...); err == nil {
		s.t.Errorf("%s: Send of a good message and one over MaxPayload returned nil", a.id)
	}
	for _, st := range []*stream{ab, ac} {
		if err := st.sendN(s.ctx(), 3); err != nil {
			s.t.Fatal(err)
		}
	}
	s.waitFor("the messages of every accepted call", func() bool { return b.hasAll(ab) && c.hasAll(ac) })

	// A call that does not fit whole: the peer stops reading, the queue
	// fills with single Sends, and then a call of a small message, which
	// may still fit, and a large one, which does not.
	g := s.stopReading(b, a)
	size := payloadSize(a)
	s.fill(ab, lamportmutex.Release, size)
	if err := ab.sendBatch([]lamportmutex.Kind{lamportmutex.Request, lamportmutex.Release}, size); !errors.Is(err, lamportmutex.ErrQueueFull) {
		s.t.Errorf("%s: Send of a Request and a Release of %d bytes to a full queue: %v, want ErrQueueFull", a.id, size, err)
	}
	g.open()
	s.wantNoneOfTheRefused(a, b, ab)
	s.report()
}

// testDataHalfBound: Data is refused at half the bound: after Send refuses
// Data, the algorithm's messages still have room, about as much again.
func testDataHalfBound(s *suite) {
	ns := s.startAll()
	a, b := ns[0], ns[1]
	g := s.stopReading(b, a)
	st := s.newStream(a, b.id, false)
	size := payloadSize(a)
	data := s.fill(st, lamportmutex.Data, size)
	if data == 0 {
		s.t.Fatalf("%s refused the first Data message of %d bytes to an empty queue", a.id, size)
	}
	if err := st.send(lamportmutex.Request, 0); err != nil {
		s.t.Fatalf("%s: Send of a Request after Data filled half the queue: %v", a.id, err)
	}
	algo := s.fill(st, lamportmutex.Release, size)
	if 2*algo < data {
		s.t.Errorf("%s accepted %d Data messages of %d bytes, then only %d Release messages as large: Data must be refused at half the bound", a.id, data, size, algo)
	}
	if err := st.send(lamportmutex.Data, size); !errors.Is(err, lamportmutex.ErrQueueFull) {
		s.t.Errorf("%s: Send of Data to a full queue: %v, want ErrQueueFull", a.id, err)
	}
	g.open()
	s.waitFor("every accepted message after the peer reads again", func() bool { return b.hasAll(st) })
	s.report()
}
