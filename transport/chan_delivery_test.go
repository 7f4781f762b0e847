package transport

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// TestChanDeliverPerPeer: deliveries from one sender never overlap and
// keep its order, while the receiver sends from inside deliver (no lock of
// Send is held during deliver, or the echoes would deadlock).
func TestChanDeliverPerPeer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"a", "b", "c", "d"}
	const perPair = 300
	n := newTestNetwork(t, ids, ChanOptions{Seed: 5, MaxDelay: 20 * time.Microsecond})
	defer closeNet(t, n)
	var (
		wg      sync.WaitGroup
		overlap atomic.Int64 // deliveries from different senders running at once
	)
	wg.Add(len(ids) * (len(ids) - 1) * perPair)
	for _, id := range ids {
		ep := endpoint(t, n, id)
		running := map[string]*atomic.Int32{}
		next := map[string]*uint64{} // next reply clock per sender; touched by its link only
		for _, o := range ids {
			running[o], next[o] = new(atomic.Int32), new(uint64)
		}
		var all atomic.Int32
		err := ep.Start(func(m lamportmutex.Message) {
			if running[m.From].Add(1) != 1 {
				t.Errorf("%s: deliveries from %s overlap", id, m.From)
			}
			if all.Add(1) > 1 {
				overlap.Add(1)
			}
			runtime.Gosched()
			switch m.Kind {
			case lamportmutex.Request:
				if err := ep.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: id, To: m.From, Clock: m.Clock}); err != nil {
					t.Errorf("%s: echo: %v", id, err)
				}
			case lamportmutex.Reply:
				if m.Clock != *next[m.From] {
					t.Errorf("%s: reply %d from %s, want %d", id, m.Clock, m.From, *next[m.From])
				}
				*next[m.From] = m.Clock + 1
				wg.Done()
			}
			all.Add(-1)
			running[m.From].Add(-1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range ids {
		ep := endpoint(t, n, from)
		for _, to := range ids {
			if to != from {
				go func() {
					for i := range uint64(perPair) {
						if err := ep.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: from, To: to, Clock: i}); err != nil {
							t.Errorf("Send: %v", err)
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	t.Logf("deliveries found another of the same receiver running %d times", overlap.Load())
}

// TestChanPeerDown: a receiver hears PeerDown once per cut of a link it
// heard PeerUp on (one for a Partition and a Disconnect together), never
// for a cut healed before it heard PeerUp, never for a reconnect, and after
// the messages of a sender that closed.
func TestChanPeerDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	// A partition in force when c starts: PeerUp, then PeerDown.
	if err := n.Partition("a", "c"); err != nil {
		t.Fatal(err)
	}
	s := startSinks(t, n)
	// The links deliver on goroutines of their own: across senders, any order.
	expectSet(t, s["a"], "b->a PEERUP#1", "c->a PEERUP#1", "c->a PEERDOWN@0")
	s["b"].expectPeerUps(t, "a", "c")
	expectSet(t, s["c"], "a->c PEERUP#1", "a->c PEERDOWN@0", "b->c PEERUP#1")

	// Two cuts of one link, one PeerDown; lifting one cut is no reconnect.
	for _, f := range []func() error{
		func() error { return n.Partition("a", "b") },
		func() error { return n.Disconnect("a") },
		func() error { return n.Heal("a", "b") },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	s["b"].expectDown(t, "a")
	s["a"].expectDown(t, "b")
	send(t, a, lamportmutex.Request, "b", 1) // held by the Disconnect
	if err := n.Reconnect("a"); err != nil {
		t.Fatal(err)
	}
	s["b"].expect(t, lamportmutex.Request, "a", 1) // no PeerUp for a reconnect

	// b closes: a and c get what b sent, then PeerDown(b).
	send(t, b, lamportmutex.Request, "a", 2)
	send(t, b, lamportmutex.Request, "c", 3)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s["a"].expect(t, lamportmutex.Request, "b", 2)
	s["a"].expectDown(t, "b")
	s["c"].expect(t, lamportmutex.Request, "b", 3)
	s["c"].expectDown(t, "b")
	// Cutting a closed peer off says nothing more.
	if err := n.Disconnect("b"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "c"} {
		flush(t, endpoint(t, n, id))
	}
	if err := n.Heal("a", "c"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "c", 4)
	s["c"].expect(t, lamportmutex.Request, "a", 4)
	if !s["a"].empty() || !s["c"].empty() {
		t.Fatal("a PeerDown for a peer already down")
	}
}

// TestChanNoDeliverAfterClose: an endpoint's Close and Restart wait for a
// deliver call that is running, and none starts after; the network's
// Close does the same, and returns ctx's error if a deliver call does not
// return in time.
func TestChanNoDeliverAfterClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, how := range []string{"endpoint", "restart", "network"} {
		t.Run(how, func(t *testing.T) {
			n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
			defer closeNet(t, n)
			a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
			startSink(t, a)
			var closed, returned atomic.Bool
			entered, gate := make(chan struct{}), make(chan struct{})
			if err := b.Start(func(m lamportmutex.Message) {
				if closed.Load() {
					t.Errorf("deliver of %v after Close returned", m)
				}
				if m.Kind == lamportmutex.Request && m.Clock == 1 {
					close(entered)
					<-gate
					returned.Store(true)
				}
			}); err != nil {
				t.Fatal(err)
			}
			send(t, a, lamportmutex.Request, "b", 1)
			send(t, a, lamportmutex.Request, "b", 2)
			<-entered
			done := make(chan error, 1)
			go func() {
				switch how {
				case "endpoint":
					done <- b.Close(context.Background())
				case "restart":
					_, err := n.Restart("b")
					done <- err
				case "network":
					done <- n.Close(context.Background())
				}
			}()
			close(gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			closed.Store(true)
			if !returned.Load() {
				t.Fatal("Close returned while a deliver call was running")
			}
			switch how {
			case "endpoint":
				send(t, a, lamportmutex.Request, "b", 3)
				flush(t, a) // b's incarnation ended: nothing to wait for
			case "restart":
				send(t, a, lamportmutex.Request, "b", 3)
				s := startSink(t, endpoint(t, n, "b"))
				s.expectPeerUps(t, "a")
				s.expect(t, lamportmutex.Request, "a", 3) // to the new incarnation only
			}
		})
	}

	t.Run("network ctx", func(t *testing.T) {
		n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
		a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
		entered, gate := make(chan struct{}), make(chan struct{})
		if err := b.Start(func(m lamportmutex.Message) {
			if m.Kind == lamportmutex.Request {
				close(entered)
				<-gate
			}
		}); err != nil {
			t.Fatal(err)
		}
		send(t, a, lamportmutex.Request, "b", 1)
		<-entered
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := n.Close(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("network Close with deliver stuck = %v, want context.Canceled", err)
		}
		close(gate) // the network's goroutines stop now
	})
}

// TestChanQuarantineCutsOneIncarnation: after a.Quarantine(b, inc), what
// that incarnation sent and a was not yet handed is dropped, as is what it
// sends later and what a held for it; what a sends it later is held and
// dropped by b's restart; the next incarnation comes up with PeerUp and
// talks to a normally.
func TestChanQuarantineCutsOneIncarnation(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
	defer closeNet(t, n)
	s := startSinks(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	s["a"].expectPeerUps(t, "b")
	s["b"].expectPeerUps(t, "a")
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	s["a"].expectDown(t, "b")
	s["b"].expectDown(t, "a")
	send(t, b, lamportmutex.Reply, "a", 1) // held, then dropped by the quarantine
	send(t, b, lamportmutex.Reply, "a", 2)
	send(t, a, lamportmutex.Reply, "b", 10) // held for b, dropped by the quarantine
	a.Quarantine("b", b.Incarnation(), errors.New("bad head"))
	if q := linkQueued(n, "b", "a") + linkQueued(n, "a", "b"); q != 0 {
		t.Fatalf("%d messages still held after the quarantine", q)
	}
	send(t, b, lamportmutex.Reply, "a", 3) // dropped as on a closed connection
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Reply, "b", 11) // held for the quarantined incarnation
	flush(t, a)                             // which can no longer receive it
	flush(t, b)
	if q := linkQueued(n, "a", "b"); q != 1 {
		t.Fatalf("a->b holds %d, want 1", q)
	}

	b2, err := n.Restart("b")
	if err != nil {
		t.Fatal(err)
	}
	s2 := startSink(t, b2)
	send(t, b2, lamportmutex.Reply, "a", 4)
	send(t, a, lamportmutex.Reply, "b", 12)
	if m := s["a"].recv(t); m.Kind != lamportmutex.PeerUp || m.From != "b" || m.Incarnation != 2 {
		t.Fatalf("a got %v, want PeerUp of b#2", m)
	}
	s["a"].expect(t, lamportmutex.Reply, "b", 4)
	s2.expectPeerUps(t, "a")
	s2.expect(t, lamportmutex.Reply, "a", 12) // not 10 or 11
	if !s["b"].empty() {
		t.Fatalf("the quarantined b got %v", s["b"].recv(t))
	}
}
