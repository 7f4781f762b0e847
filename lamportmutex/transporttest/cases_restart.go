package transporttest

import (
	"errors"
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// restart restarts peer id through the network and starts its next
// incarnation. Subtests that call it skip when the network cannot.
func (s *suite) restart(id string) *node {
	s.t.Helper()
	old := s.node(id)
	tr, err := s.net.Restart(id)
	if err != nil {
		s.t.Fatalf("Restart(%s): %v", id, err)
	}
	old.crashed.Store(true)
	if tr == nil || tr.ID() != id {
		s.t.Fatalf("Restart(%s) returned a transport for another peer", id)
	}
	n := s.newNode(tr)
	if n.inc <= old.inc {
		s.t.Fatalf("Restart(%s): incarnation %d after %d, want a larger one", id, n.inc, old.inc)
	}
	s.mu.Lock()
	s.nodes[id] = n
	s.mu.Unlock()
	n.start()
	return n
}

func (s *suite) needRestart() {
	s.t.Helper()
	if s.net.Restart == nil {
		s.t.Skip("the Network has no Restart: incarnations are not checked")
	}
}

func (s *suite) needCut() {
	s.t.Helper()
	if s.net.Cut == nil {
		s.t.Skip("the Network has no Cut and Heal: lost connections are not checked")
	}
}

// testRestartPeerUp: after a restart, every peer gets exactly one PeerUp of
// the new incarnation, before its messages; the new incarnation gets
// PeerUp from every peer; traffic both ways is complete and in order.
func testRestartPeerUp(s *suite) {
	s.needRestart()
	ns := s.startAll()
	a, c := ns[0], ns[2]
	old := ns[1]
	st := s.newStream(a, old.id, false)
	if err := st.sendN(s.ctx(), 10); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the messages to the first incarnation", func() bool { return old.hasAll(st) })
	b := s.restart(old.id)
	// b sends before it knows its peers are up: they must see its PeerUp
	// first all the same.
	early := []*stream{s.newStream(b, a.id, false), s.newStream(b, c.id, false)}
	s.sendConcurrently(early, 50)
	s.waitUp(a, b, c)
	streams := append(early, s.newStream(a, b.id, false))
	s.sendConcurrently(streams, 50)
	for _, st := range streams {
		to := s.node(st.to)
		s.waitFor(fmt.Sprintf("the messages from %s to %s after the restart", st.from.id, st.to), func() bool { return to.hasAll(st) })
	}
	for _, n := range []*node{a, c} {
		if got := n.ups(b.id); len(got) != 2 || got[0] != old.inc || got[1] != b.inc {
			s.t.Errorf("%s: PeerUps of %s: %v, want [%d %d]", n.id, b.id, got, old.inc, b.inc)
		}
	}
	s.report()
}

// testRestartDeadIncarnation: messages of a crashed incarnation still in
// flight (its receiver's deliver blocked) may arrive, but never after the
// PeerUp of the next incarnation; the next incarnation's arrive complete.
// Messages to the crashed incarnation may reach the next one or be lost,
// in order, once each.
func testRestartDeadIncarnation(s *suite) {
	s.needRestart()
	ns := s.startAll()
	a, old := ns[0], ns[1]
	g := s.newGate()
	a.onDeliver(func(m lamportmutex.Message) {
		if m.From == old.id && m.Kind != lamportmutex.PeerUp && m.Kind != lamportmutex.PeerDown {
			g.wait()
		}
	})
	dying := s.newStream(old, a.id, true)
	if err := dying.sendN(s.ctx(), 50); err != nil {
		s.t.Fatal(err)
	}
	toDead := s.newStream(a, old.id, true)
	if err := toDead.sendN(s.ctx(), 20); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the first message of the first incarnation", func() bool { return a.got(dying) >= 1 })
	b := s.restart(old.id)
	fresh := s.newStream(b, a.id, false)
	if err := fresh.sendN(s.ctx(), 30); err != nil {
		s.t.Fatal(err)
	}
	g.open()
	s.waitFor("the messages of the new incarnation", func() bool { return a.hasAll(fresh) })
	s.waitUp(a, b)
	back := s.newStream(a, b.id, false)
	if err := back.sendN(s.ctx(), 30); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the messages to the new incarnation", func() bool { return b.hasAll(back) })
	s.report()
}

// testQuarantineThenRestart: after a peer quarantined an incarnation, the
// next incarnation of that peer comes up (PeerUp) and is delivered.
func testQuarantineThenRestart(s *suite) {
	s.needRestart()
	ns := s.startAll()
	old, b := ns[0], ns[1]
	b.tr.Quarantine(old.id, old.inc, errors.New("transporttest: refused"))
	a := s.restart(old.id)
	s.waitUp(a, b)
	st := s.newStream(a, b.id, false)
	if err := st.sendN(s.ctx(), 20); err != nil {
		s.t.Fatal(err)
	}
	s.waitFor("the new incarnation's messages after the old one was quarantined", func() bool { return b.hasAll(st) })
	s.report()
}

// testCutHeal: messages sent while a link is cut are held, then arrive in
// order, exactly once; a reconnect of the same incarnation brings no
// PeerUp; other links carry on meanwhile.
func testCutHeal(s *suite) {
	s.needCut()
	ns := s.startAll()
	a, b, c := ns[0], ns[1], ns[2]
	ab, ba, ac := s.newStream(a, b.id, false), s.newStream(b, a.id, false), s.newStream(a, c.id, false)
	s.sendConcurrently([]*stream{ab, ba}, 20)
	s.waitFor("the messages before the cut", func() bool { return b.hasAll(ab) && a.hasAll(ba) })
	if err := s.net.Cut(a.id, b.id); err != nil {
		s.t.Fatalf("Cut: %v", err)
	}
	s.sendConcurrently([]*stream{ab, ba, ac}, 50)
	s.waitFor("p1's messages at p3 while p1 and p2 are cut apart", func() bool { return c.hasAll(ac) })
	if err := s.net.Heal(a.id, b.id); err != nil {
		s.t.Fatalf("Heal: %v", err)
	}
	s.waitFor("the messages held by the cut", func() bool { return b.hasAll(ab) && a.hasAll(ba) })
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		if got := p[0].ups(p[1].id); len(got) != 1 {
			s.t.Errorf("%s: PeerUps of %s: %v, want only the first", p[0].id, p[1].id, got)
		}
		if d := p[0].downs(p[1].id); d > 1 {
			s.t.Errorf("%s: %d PeerDowns of %s for one cut", p[0].id, d, p[1].id)
		}
	}
	s.report()
}

// testCutMidStream: links cut and healed while both directions carry
// streams lose nothing, reorder nothing and repeat nothing, and bring no
// new PeerUp.
func testCutMidStream(s *suite) {
	s.needCut()
	const count, cuts = 500, 4
	ns := s.startAll()
	a, b := ns[0], ns[1]
	ab, ba := s.newStream(a, b.id, false), s.newStream(b, a.id, false)
	ctx := s.ctx()
	errs := make(chan error, 2)
	for _, st := range []*stream{ab, ba} {
		go func() { errs <- st.sendN(ctx, count) }()
	}
	for i := 1; i <= cuts; i++ {
		s.waitFor("progress between cuts", func() bool { return b.got(ab) >= i*count/(cuts+1) })
		if err := s.net.Cut(a.id, b.id); err != nil {
			s.t.Fatalf("Cut: %v", err)
		}
		if err := s.net.Heal(a.id, b.id); err != nil {
			s.t.Fatalf("Heal: %v", err)
		}
	}
	for range 2 {
		if err := await(s, "the senders (a Send or a Flush hung)", errs); err != nil {
			s.t.Error(err)
		}
	}
	s.waitFor("every message sent across the cuts", func() bool { return b.hasAll(ab) && a.hasAll(ba) })
	for _, p := range [][2]*node{{a, b}, {b, a}} {
		if got := p[0].ups(p[1].id); len(got) != 1 {
			s.t.Errorf("%s: PeerUps of %s: %v, want only the first", p[0].id, p[1].id, got)
		}
	}
	s.report()
}

// testCutBound: what is held for a peer that cannot be reached counts
// toward the bound: Send refuses with ErrQueueFull, and what it accepted
// arrives after Heal.
func testCutBound(s *suite) {
	s.needCut()
	ns := s.startAll()
	a, b := ns[0], ns[1]
	if err := s.net.Cut(a.id, b.id); err != nil {
		s.t.Fatalf("Cut: %v", err)
	}
	st := s.newStream(a, b.id, false)
	s.fill(st, lamportmutex.Release, payloadSize(a))
	if err := s.net.Heal(a.id, b.id); err != nil {
		s.t.Fatalf("Heal: %v", err)
	}
	s.waitFor("the messages held by the cut", func() bool { return b.hasAll(st) })
	s.report()
}
