package lamportmutex

// Tests of Config.Trace: every change of the clock is in some event, a
// received message is reported with the clock right after the receive rule
// and before the sends it causes.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// traceLog records a Mutex's trace events, as "sent KIND@c to p" or
// "recv KIND@c from p", "local", each with "before->after".
type traceLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *traceLog) add(ev Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *traceLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.events {
		m := ev.Message
		var s string
		switch {
		case m.Kind == 0:
			s = "local"
		case ev.Sent:
			s = fmt.Sprintf("sent %s@%d to %s", m.Kind, m.Clock, m.To)
		case m.Kind == PeerUp:
			s = fmt.Sprintf("recv %s from %s", m.Kind, m.From)
		default:
			s = fmt.Sprintf("recv %s@%d from %s", m.Kind, m.Clock, m.From)
		}
		out = append(out, fmt.Sprintf("%s: %d->%d", s, ev.Before, ev.Clock))
	}
	return out
}

// checkChain checks that each event starts where the previous one ended,
// from start, and that the last one ends at the Mutex's clock.
func (l *traceLog) checkChain(t *testing.T, mu *Mutex, start uint64) {
	t.Helper()
	l.mu.Lock()
	events := slices.Clone(l.events)
	l.mu.Unlock() // not held across State: a held RELEASE's timer traces under the Mutex's lock
	at := start
	for i, ev := range events {
		if ev.Before != at {
			t.Errorf("event %d %+v: Before %d, want the previous event's Clock %d", i, ev, ev.Before, at)
		}
		at = ev.Clock
	}
	if st := barrier(t, mu); st.Clock != at {
		t.Errorf("last traced clock %d, the Mutex's clock is %d", at, st.Clock)
	}
}

func wantTrace(t *testing.T, l *traceLog, want []string) {
	t.Helper()
	if got := l.lines(); !slices.Equal(got, want) {
		t.Errorf("trace:\n%q\nwant:\n%q", got, want)
	}
}

// TestTraceLamport: the receive rule's clock before and after, then each
// send with its own clock; DATA and PEERUP leave the clock alone; a REQUEST
// resent to a restarted peer keeps its stamp and moves no clock.
func TestTraceLamport(t *testing.T) {
	ft := newFakeTransport("1", 1)
	log := &traceLog{}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft, StartClock: 3, Trace: log.add})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 5)
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 20, Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Clock: 9, Incarnation: 1})
	barrier(t, mu)
	want := []string{
		"recv PEERUP from 2: 3->3",
		"sent HELLO@3 to 2: 3->3", // a HELLO does not tick
		"recv HELLO@1 from 2: 3->3",
		"recv PEERUP from 3: 3->3",
		"sent HELLO@3 to 3: 3->3",
		"recv HELLO@1 from 3: 3->3",
		"recv REQUEST@20 from 2: 3->21",
		"sent REPLY@22 to 2: 21->22",
		"recv DATA@9 from 2: 22->22",
	}
	wantTrace(t, log, want)

	locked := make(chan error, 1)
	go func() { _, err := mu.Lock(context.Background()); locked <- err }()
	waitSent(t, ft, "3", Request, 1)
	ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: 6}) // 3 restarted
	ft.feed(Message{Kind: Hello, From: "3", To: "1", Clock: 1, Incarnation: 1})
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 24, Incarnation: 1})
	ft.feed(Message{Kind: Reply, From: "3", To: "1", Clock: 24, Incarnation: 1})
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock([]byte("block")); err != nil {
		t.Fatal(err)
	}
	want = append(want,
		"sent REQUEST@23 to 2: 22->23",
		"sent REQUEST@23 to 3: 23->23",
		"recv PEERUP from 3: 23->23",
		"sent HELLO@23 to 3: 23->23",
		"sent REQUEST@23 to 3: 23->23",
		"recv HELLO@1 from 3: 23->23",
		"recv RELEASE@24 from 2: 23->25",
		"recv REPLY@24 from 3: 25->26",
		"sent RELEASE@27 to 2: 26->27",
		"sent RELEASE@27 to 3: 27->27",
	)
	wantTrace(t, log, want)
	log.checkChain(t, mu, 3)
}

// TestTraceLocalTick: a release that sends nothing (Ricart-Agrawala with no
// REPLY held back) still moves the clock, and is reported as a local event.
func TestTraceLocalTick(t *testing.T) {
	ft := newFakeTransport("1", 1)
	log := &traceLog{}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft, Algorithm: RicartAgrawala, Trace: log.add})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 5)
	locked := make(chan error, 1)
	go func() { _, err := mu.Lock(context.Background()); locked <- err }()
	waitSent(t, ft, "2", Request, 1)
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: 4, Incarnation: 1})
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	barrier(t, mu)
	wantTrace(t, log, []string{
		"recv PEERUP from 2: 0->0",
		"sent HELLO@0 to 2: 0->0",
		"recv HELLO@1 from 2: 0->1",
		"sent REQUEST@2 to 2: 1->2",
		"recv REPLY@4 from 2: 2->5",
		"local: 5->6",
	})
	log.checkChain(t, mu, 0)
}

// TestTraceHeldRelease: an Unlock that holds its RELEASEs back reports
// the release's tick as a local event; each RELEASE, sent later (before
// the REPLY to a peer that asks, or when its linger ends), is reported
// then, with Clock equal to Before, whatever the clock did meanwhile. The
// test holds the linger timer and plays it after the REPLY.
func TestTraceHeldRelease(t *testing.T) {
	var log *traceLog
	mu, ft := unlockHeld(t, func() Config {
		log = &traceLog{}
		return Config{StartClock: 3, Trace: log.add}
	})
	log.mu.Lock()
	from := len(log.events) - 1 // the Unlock's
	log.mu.Unlock()
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 50, Incarnation: 1})
	mu.sendHeld()
	log.checkChain(t, mu, 3)
	lines := log.lines()[from:]
	log.mu.Lock()
	evs := slices.Clone(log.events[from:])
	log.mu.Unlock()
	if len(evs) == 0 || evs[0].Message.Kind != 0 || evs[0].Clock != evs[0].Before+1 {
		t.Fatalf("the Unlock's event: %+v, want a local event of one tick", evs)
	}
	released := evs[0].Clock
	releases := 0
	for _, ev := range evs[1:] {
		if !ev.Sent || ev.Message.Kind != Release {
			continue
		}
		releases++
		if ev.Message.Clock != released || ev.Clock != ev.Before {
			t.Errorf("held RELEASE reported as %+v, want Message.Clock %d and Clock equal to Before", ev, released)
		}
	}
	if releases != 2 {
		t.Errorf("%d RELEASEs reported sent, want 2: %q", releases, lines)
	}
	wantTrace(t, &traceLog{events: evs}, []string{
		"local: 7->8",
		"recv REQUEST@50 from 2: 8->51",
		"sent RELEASE@8 to 2: 51->51", // held, before the REPLY
		"sent REPLY@52 to 2: 51->52",
		"sent RELEASE@8 to 3: 52->52", // when its linger ends
	})
}
