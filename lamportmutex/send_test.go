package lamportmutex

// Tests of application messages (Mutex.Send, Handler.HandleMessage) and of
// Handler.HandlePeerUp, against a Transport the test drives.

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// callLog records the callbacks of one Mutex, in order.
type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.mu.Unlock()
}

func (l *callLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func newLoggedMutex(t *testing.T, ft *fakeTransport, peers []string) (*Mutex, *callLog) {
	t.Helper()
	log := &callLog{}
	mu, err := New(Config{ID: ft.id, Peers: peers, Transport: ft,
		Handler: funcHandler{
			release: func(from string, p []byte) error { log.add("release " + from + " " + string(p)); return nil },
			message: func(from string, p []byte) error { log.add("message " + from + " " + string(p)); return nil },
			up:      func(peer string) { log.add("up " + peer) },
			down:    func(peer string) { log.add("down " + peer) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mu.Close(context.Background()) })
	return mu, log
}

func TestSendErrors(t *testing.T) {
	ft := newFakeTransport("1", 1)
	ft.max = 4
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	if err := mu.Send("2", []byte("x")); !errors.Is(err, ErrPeerDown) {
		t.Errorf("Send before the peer's PeerUp = %v, want ErrPeerDown", err)
	}
	ft.syncWith(t, mu, []string{"2"}, 5)
	for _, to := range []string{"1", "9", ""} {
		if err := mu.Send(to, nil); !errors.Is(err, ErrNotMember) {
			t.Errorf("Send to %q = %v, want ErrNotMember", to, err)
		}
	}
	if err := mu.Send("2", []byte("too long")); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("Send of 8 bytes over a 4-byte transport = %v, want ErrPayloadTooLarge", err)
	}
	if err := mu.Send("3", nil); !errors.Is(err, ErrPeerDown) {
		t.Errorf("Send to a peer that has not come up = %v, want ErrPeerDown", err)
	}
	if err := mu.Send("2", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	_ = mu.Close(context.Background())
	if err := mu.Send("2", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	got := ft.sentTo("2", Data)
	if len(got) != 1 || string(got[0].Payload) != "ok" || got[0].Incarnation != 5 {
		t.Fatalf("DATA sent to 2 = %v, want one \"ok\" addressed to incarnation 5", got)
	}
	if st := mu.Stats(); st.Sent[Data] != 1 {
		t.Errorf("Stats.Sent[DATA] = %d, want 1", st.Sent[Data])
	}
}

// HandlePeerUp comes at first contact and at each restart, before any message
// of the new incarnation; DATA for another incarnation of this peer, or sent
// before the sender's HELLO, is not handed over; the rest is, in order and
// in line with RELEASE payloads.
func TestHandleMessageAndPeerUp(t *testing.T) {
	ft := newFakeTransport("1", 7)
	mu, log := newLoggedMutex(t, ft, []string{"1", "2"})
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 3})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("before hello"), Incarnation: 7})
	ft.feed(Message{Kind: Hello, From: "2", To: "1", Clock: 1, Incarnation: 7})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("a"), Incarnation: 7})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("for a dead incarnation"), Incarnation: 6})
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 5, Incarnation: 7})
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 8, Payload: []byte("r"), Incarnation: 7})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("b"), Incarnation: 7})
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 4})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("c"), Incarnation: 7}) // before the new HELLO
	ft.feed(Message{Kind: Hello, From: "2", To: "1", Clock: 1, Incarnation: 7})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("d"), Incarnation: 7})
	want := []string{"up 2", "message 2 a", "release 2 r", "message 2 b", "up 2", "message 2 d"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("callbacks = %q, want %q", got, want)
	}
	st := mu.Stats()
	if st.Stale != 3 || st.Received[Data] != 3 || st.Received[PeerUp] != 2 {
		t.Errorf("Stats: Stale %d, Received DATA %d, PEERUP %d; want 3, 3, 2", st.Stale, st.Received[Data], st.Received[PeerUp])
	}
	// Our HELLO to the new incarnation is queued before HandlePeerUp runs, so
	// a DATA sent from there would follow it.
	waitSent(t, ft, "2", Hello, 2) // the pump hands messages over asynchronously
	if h := ft.sentTo("2", Hello); len(h) != 2 || h[1].Incarnation != 4 {
		t.Errorf("HELLOs sent = %v, want two, the second to incarnation 4", h)
	}
	if err := mu.Send("2", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitSent(t, ft, "2", Data, 1)
	if d := ft.sentTo("2", Data); len(d) != 1 || d[0].Incarnation != 4 {
		t.Errorf("DATA sent = %v, want one to incarnation 4", d)
	}
}

// A peer's restart is reported before a grant that the restart made
// possible: the application learns of it before it acts under the lock.
func TestHandlePeerUpBeforeGrant(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	var entries []uint64 // Stats.Entries at each HandlePeerUp
	var err error
	mu, err = New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft,
		Handler: funcHandler{up: func(string) { entries = append(entries, mu.Stats().Entries) }}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 1)
	// Peer 2 requests first and is granted; then we request.
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 2, Incarnation: 1})
	got := make(chan error, 1)
	go func() { _, err := mu.Lock(context.Background()); got <- err }()
	waitSent(t, ft, "2", Request, 1)
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: 9, Incarnation: 1})
	// Peer 2 dies holding the lock and comes back: its request is gone, and
	// we are granted, after HandlePeerUp ran.
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 2})
	ft.feed(Message{Kind: Hello, From: "2", To: "1", Clock: 20, Incarnation: 1})
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(entries, []uint64{0, 0}) {
		t.Fatalf("Stats.Entries at each HandlePeerUp = %v, want [0 0]: the grant came first", entries)
	}
}

// waitSent waits until ft has sent n messages of kind k to peer to.
func waitSent(t *testing.T, ft *fakeTransport, to string, k Kind, n int) {
	t.Helper()
	for len(ft.sentTo(to, k)) < n {
		runtime.Gosched()
	}
}
