package lamportmutex

// Tests of quarantine in the Mutex driver and of the outbox bound, against
// Transports the test drives.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// barrier waits until mu's goroutine has handled everything fed before.
func barrier(t *testing.T, mu *Mutex) State {
	t.Helper()
	st, err := mu.State(), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantQuarantines(t *testing.T, ft *fakeTransport, want ...string) {
	t.Helper()
	if got := ft.quarantines(); !slices.Equal(got, want) {
		t.Errorf("Transport.Quarantine calls %q, want %q", got, want)
	}
}

// TestQuarantineBadClock: a REQUEST with clock 2^64-1 from "3" gets that
// incarnation of "3" quarantined without moving the clock; what that
// incarnation sends later is ignored, so the lock waits; a newer
// incarnation's PeerUp brings "3" back and the lock is granted.
func TestQuarantineBadClock(t *testing.T) {
	mu, ft := newThreePeerMutex(t)
	ft.syncWith(t, mu, []string{"2"}, 4)
	ft.syncWith(t, mu, []string{"3"}, 5)

	ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: 1<<64 - 1, Incarnation: 1})
	st := barrier(t, mu)
	wantQuarantines(t, ft, "3#5")
	if st.Clock > 10 || len(st.Queue) != 0 {
		t.Fatalf("after a refused REQUEST at 2^64-1: %+v, want the clock and queue untouched", st)
	}
	if s := mu.Stats(); s.Quarantined != 1 {
		t.Errorf("Stats.Quarantined = %d, want 1", s.Quarantined)
	}

	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	waitSent(t, ft, "3", Request, 1)
	req := ft.sentTo("3", Request)[0]
	dropped := mu.Stats().Dropped
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	ft.feed(Message{Kind: Reply, From: "3", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: 5}) // the quarantined one again
	st = barrier(t, mu)
	if st.Held || !slices.Equal(st.Missing, []string{"3"}) {
		t.Fatalf("the quarantined incarnation's REPLY counted: %+v", st)
	}
	if got := mu.Stats().Dropped - dropped; got != 2 {
		t.Errorf("%d messages of the quarantined incarnation dropped, want 2", got)
	}

	newThreeGrants(t, ft, 6, req, locked)
	if err := mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	wantQuarantines(t, ft, "3#5")
}

// TestQuarantineNearTopClock: a REQUEST at MaxClock-50, within MaxClock
// but far more than MaxClockStep above our clock, gets that incarnation of
// "3" quarantined and moves nothing; once a newer incarnation of "3" comes
// up and answers, the lock is granted, at a clock far from the top.
func TestQuarantineNearTopClock(t *testing.T) {
	mu, ft := newThreePeerMutex(t)
	ft.syncWith(t, mu, []string{"2", "3"}, 4)

	ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: MaxClock - 50, Incarnation: 1})
	st := barrier(t, mu)
	wantQuarantines(t, ft, "3#4")
	if st.Clock > 10 || len(st.Queue) != 0 {
		t.Fatalf("after a refused REQUEST at MaxClock-50: %+v, want the clock and queue untouched", st)
	}

	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	waitSent(t, ft, "2", Request, 1)
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	newThreeGrants(t, ft, 5, req, locked)
	if st := barrier(t, mu); !st.Held || st.Clock > 100 {
		t.Errorf("after the grant: %+v, want held at a low clock", st)
	}
	if err := mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	wantQuarantines(t, ft, "3#4")
}

// TestQuarantineOnReleaseError: a RELEASE whose payload HandleRelease refuses
// does not take effect (the sender's request stays queued) and quarantines
// the sender; a RELEASE with a payload from a peer with no request queued
// never reaches HandleRelease and quarantines it too.
func TestQuarantineOnReleaseError(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var handled []string
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
		Handler: funcHandler{release: func(from string, p []byte) error {
			handled = append(handled, from+":"+string(p))
			if string(p) == "bad" {
				return errors.New("bad block")
			}
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 2)

	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 5, Incarnation: 1})
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 7, Payload: []byte("bad"), Incarnation: 1})
	st := barrier(t, mu)
	if !slices.Equal(st.Queue, []Token{{Clock: 5, ID: "2"}}) {
		t.Errorf("queue %v after a refused RELEASE, want 2's request still in it", st.Queue)
	}
	wantQuarantines(t, ft, "2#2")

	ft.feed(Message{Kind: Release, From: "3", To: "1", Clock: 8, Payload: []byte("forged"), Incarnation: 1})
	barrier(t, mu)
	wantQuarantines(t, ft, "2#2", "3#2")
	if !slices.Equal(handled, []string{"2:bad"}) {
		t.Errorf("HandleRelease saw %q, want only 2's payload (3 had no request)", handled)
	}
	if s := mu.Stats(); s.Quarantined != 2 || s.HandlerErrors != 1 {
		t.Errorf("Stats: Quarantined %d, HandlerErrors %d; want 2, 1", s.Quarantined, s.HandlerErrors)
	}
}

// TestQuarantineOnMessageErrorAndReport: an error from HandleMessage
// quarantines the sender, whose later messages are not delivered;
// Mutex.Quarantine, also from inside a callback, quarantines the current
// incarnation; it is a no-op for ourselves, a non-member, a peer not yet
// up, and after Close.
func TestQuarantineOnMessageErrorAndReport(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	var got []string
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3", "4"}, Transport: ft,
		Handler: funcHandler{message: func(from string, p []byte) error {
			got = append(got, from+":"+string(p))
			switch string(p) {
			case "bad":
				return errors.New("malformed")
			case "report":
				mu.Quarantine(from, errors.New("found late"))
			}
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2", "3"}, 3)

	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("bad"), Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("more"), Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "3", To: "1", Payload: []byte("report"), Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "3", To: "1", Payload: []byte("after"), Incarnation: 1})
	barrier(t, mu)
	if !slices.Equal(got, []string{"2:bad", "3:report"}) {
		t.Errorf("HandleMessage saw %q, want nothing from a quarantined incarnation", got)
	}
	wantQuarantines(t, ft, "2#3", "3#3")

	mu.Quarantine("1", errors.New("self"))
	mu.Quarantine("9", errors.New("stranger"))
	mu.Quarantine("4", errors.New("not up yet"))
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 4})
	barrier(t, mu)
	mu.Quarantine("2", errors.New("found late"))
	barrier(t, mu)
	wantQuarantines(t, ft, "2#3", "3#3", "2#4")
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Quarantine("3", errors.New("after close"))
	wantQuarantines(t, ft, "2#3", "3#3", "2#4")
}

// Application data that the Transport's queue has no room for is refused
// with ErrPeerBusy and costs the peer nothing; the algorithm's messages
// still go, and Send works again once there is room. Send and Unlock copy
// the payload.
func TestSendRefusedWhenTheQueueIsFull(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var full atomic.Bool
	ft.send = func(msg Message) error {
		if full.Load() && msg.Kind == Data {
			return fmt.Errorf("queue to %s: %w", msg.To, ErrQueueFull)
		}
		return nil
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 1)
	full.Store(true)
	if err := mu.Send("2", []byte("p")); !errors.Is(err, ErrPeerBusy) {
		t.Fatalf("Send with the queue full = %v, want ErrPeerBusy", err)
	}
	if n := mu.Stats().Sent[Data]; n != 0 {
		t.Errorf("Stats.Sent[DATA] = %d, want 0 (the refused one is not queued)", n)
	}
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	waitSent(t, ft, "2", Request, 1)
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: ft.sentTo("2", Request)[0].Clock + 1, Incarnation: 1})
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	update := []byte("update")
	if err := mu.Unlock(update); err != nil {
		t.Fatal(err)
	}
	copy(update, "XXXXXX")
	if got := ft.sentTo("2", Release)[0].Payload; string(got) != "update" {
		t.Errorf("Unlock's payload changed after Unlock returned: %q", got)
	}
	full.Store(false)
	mine := bytes.Repeat([]byte("m"), 8)
	if err := mu.Send("2", mine); err != nil {
		t.Fatalf("Send once there is room: %v", err)
	}
	copy(mine, "XXXXXXXX") // the caller reuses its buffer
	if got := ft.sentTo("2", Data)[0].Payload; string(got) != "mmmmmmmm" {
		t.Errorf("Send's payload changed after Send returned: %q", got)
	}
	if st := mu.Stats(); st.Quarantined != 0 || mu.Err() != nil {
		t.Errorf("refused data cost the peer its session or stopped the Mutex: %+v %v", st, mu.Err())
	}
}

// TestStartClockBound: a StartClock above MaxClock is a config error;
// MaxClock itself is the most a peer may start with.
func TestStartClockBound(t *testing.T) {
	ft := newFakeTransport("1", 1)
	if _, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft, StartClock: MaxClock + 1}); !errors.Is(err, ErrConfig) {
		t.Errorf("StartClock MaxClock+1: %v, want ErrConfig", err)
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft, StartClock: MaxClock})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	if st := barrier(t, mu); st.Clock != MaxClock {
		t.Errorf("clock %d, want MaxClock", st.Clock)
	}
}

// TestQuarantineRequestFlood: a peer that sends REQUEST after REQUEST
// without a RELEASE gets one REPLY and is quarantined at the second, so
// what it makes us queue stays bounded.
func TestQuarantineRequestFlood(t *testing.T) {
	mu, ft := newThreePeerMutex(t)
	ft.syncWith(t, mu, []string{"2", "3"}, 4)
	base := barrier(t, mu).Clock
	for i := range uint64(50) {
		ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: base + 1 + i, Incarnation: 1})
	}
	barrier(t, mu)
	wantQuarantines(t, ft, "2#4")
	waitSent(t, ft, "2", Reply, 1)
	barrier(t, mu)
	if n := len(ft.sentTo("2", Reply)); n != 1 {
		t.Errorf("%d REPLYs to a flood of REQUESTs, want 1", n)
	}
}

// TestQuarantineReportOutlivesIncarnation: Mutex.Quarantine names the
// incarnation current when it is called; if the peer comes up as another
// incarnation before the driver applies it, the request is dropped and the
// new incarnation is not quarantined. (The Trace hook runs while the driver
// handles the PeerUp, before it publishes the new incarnation: a call from
// there is one made just before the PeerUp.)
func TestQuarantineReportOutlivesIncarnation(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
		Trace: func(ev Event) {
			if ev.Message.Kind == PeerUp && ev.Message.From == "2" && ev.Message.Incarnation == 4 {
				mu.Quarantine("2", errors.New("found in what incarnation 3 sent"))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 3)

	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 4})
	barrier(t, mu)
	wantQuarantines(t, ft)
	ft.feed(Message{Kind: Hello, From: "2", To: "1", Clock: 1, Incarnation: 1})
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 2, Incarnation: 1})
	if st := barrier(t, mu); len(st.Queue) != 1 || st.Queue[0].ID != "2" {
		t.Errorf("queue %v, want the new incarnation's request", st.Queue)
	}

	mu.Quarantine("2", errors.New("found in what incarnation 4 sent"))
	barrier(t, mu)
	wantQuarantines(t, ft, "2#4")
}

// TestQuarantineThenLowerIncarnation: after incarnation 9 of "2" is
// quarantined, a PeerUp of incarnation 9 is still ignored, but one of a
// lower incarnation is a restart (without authenticated handshakes 9 may
// have been an impostor's forgery): "2" is greeted and its requests are
// queued.
func TestQuarantineThenLowerIncarnation(t *testing.T) {
	mu, ft := newThreePeerMutex(t)
	ft.syncWith(t, mu, []string{"3"}, 4)
	ft.syncWith(t, mu, []string{"2"}, 9)
	mu.Quarantine("2", errors.New("bad input from incarnation 9"))
	barrier(t, mu)
	wantQuarantines(t, ft, "2#9")

	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 9})
	barrier(t, mu)
	hellos := len(ft.sentTo("2", Hello))
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 5})
	ft.feed(Message{Kind: Hello, From: "2", To: "1", Clock: 1, Incarnation: 1})
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 2, Incarnation: 1})
	if st := barrier(t, mu); len(st.Queue) != 1 || st.Queue[0].ID != "2" {
		t.Fatalf("queue %v, want the request of incarnation 5 of 2", st.Queue)
	}
	waitSent(t, ft, "2", Hello, hellos+1)
	if h := ft.sentTo("2", Hello); h[len(h)-1].Incarnation != 5 {
		t.Errorf("greeted %v, want incarnation 5", h[len(h)-1])
	}
	wantQuarantines(t, ft, "2#9")
}

// newThreePeerMutex starts the Mutex of "1" among "1", "2" and "3" over a
// fake transport, closed when the test ends.
func newThreePeerMutex(t *testing.T) (*Mutex, *fakeTransport) {
	t.Helper()
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mu.Close(context.Background()) })
	return mu, ft
}

// newThreeGrants brings up incarnation inc of peer "3", which greets us
// after our request: the Lock waiting on locked must then be granted.
func newThreeGrants(t *testing.T, ft *fakeTransport, inc uint64, req Message, locked <-chan error) {
	t.Helper()
	ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: inc})
	waitSent(t, ft, "3", Request, 2) // our request, resent to the new incarnation
	ft.feed(Message{Kind: Hello, From: "3", To: "1", Clock: req.Clock + 2, Incarnation: 1})
	select {
	case err := <-locked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(reviewBound):
		t.Fatal("no grant after the new incarnation of 3 answered")
	}
}
