package transport

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// encodedSize is the number of bytes m takes on a link.
func encodedSize(t *testing.T, m lamportmutex.Message) int {
	t.Helper()
	b, err := marshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// TestChanSendRefusesPastTheBound: on a cut link Send never blocks. It
// accepts Data up to half of QueueBytes and other kinds up to all of it,
// then refuses with ErrQueueFull, queuing nothing; held bytes count until
// delivered, and delivery makes room again.
func TestChanSendRefusesPastTheBound(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const bound = 1000
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{QueueBytes: bound})
	defer closeNet(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	data := lamportmutex.Message{Kind: lamportmutex.Data, From: "a", To: "b", Payload: []byte("0123456789")}
	req := lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: 1, Payload: []byte("0123456789")}
	dsize, rsize := encodedSize(t, data), encodedSize(t, req)
	if dsize != rsize {
		t.Fatalf("sizes %d and %d differ; the test assumes equal sizes", dsize, rsize)
	}

	queued, sent := 0, 0
	for ; queued+dsize <= bound/2; queued += dsize {
		if err := a.Send(data); err != nil {
			t.Fatalf("Data with %d of %d bytes queued: %v", queued, bound, err)
		}
		sent++
	}
	err := a.Send(data)
	if !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("Data past half the bound (%d bytes queued) = %v, want ErrQueueFull", queued, err)
	}
	for ; queued+rsize <= bound; queued += rsize {
		if err := a.Send(req); err != nil {
			t.Fatalf("Request with %d of %d bytes queued: %v", queued, bound, err)
		}
		sent++
	}
	for _, m := range []lamportmutex.Message{req, data, {Kind: lamportmutex.Reply, From: "a", To: "b", Clock: 2}} {
		if err := a.Send(m); !errors.Is(err, lamportmutex.ErrQueueFull) {
			t.Fatalf("%v past the bound (%d bytes queued) = %v, want ErrQueueFull", m, queued, err)
		}
	}
	if q := linkQueued(n, "a", "b"); q != sent {
		t.Fatalf("link holds %d messages, want the %d accepted", q, sent)
	}
	// Another link is not affected.
	if err := b.Send(lamportmutex.Message{Kind: lamportmutex.Data, From: "b", To: "a", Payload: data.Payload}); err != nil {
		t.Fatalf("b->a: %v", err)
	}

	// Delivered bytes leave the queue. (b hears of no cut: the link was
	// healed before b started, so before it heard of a at all.)
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	sb := startSink(t, b)
	flush(t, a)
	sb.expectPeerUps(t, "a")
	for i := range sent {
		if m := sb.recv(t); m.From != "a" || string(m.Payload) != "0123456789" {
			t.Fatalf("message %d: got %v", i, m)
		}
	}
	if !sb.empty() {
		t.Fatalf("b got %v, more than was accepted", sb.recv(t))
	}
	if err := a.Send(data); err != nil {
		t.Fatalf("Send after the queue drained: %v", err)
	}
}

// TestChanHeldForADownPeerCounts: messages held for a receiver that is
// closed or not started count toward the bound.
func TestChanHeldForADownPeerCounts(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{QueueBytes: 200})
	defer closeNet(t, n)
	a, c := endpoint(t, n, "a"), endpoint(t, n, "c")
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for to, what := range map[string]string{"b": "not started", "c": "closed"} {
		m := lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: to}
		var err error
		for i := 0; err == nil; i++ {
			if i > 200 {
				t.Fatalf("a->%s (%s): 200 Sends accepted within 200 bytes", to, what)
			}
			err = a.Send(m)
		}
		if !errors.Is(err, lamportmutex.ErrQueueFull) {
			t.Fatalf("a->%s (%s): %v, want ErrQueueFull", to, what, err)
		}
	}
}

// TestChanFlush: Flush returns once what was sent before it has been
// delivered (deliver returned), returns ctx's error while it has not, and
// returns when the receiver's incarnation ends or is quarantined.
func TestChanFlush(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	startSink(t, a)
	startSink(t, endpoint(t, n, "c"))
	gate := make(chan struct{})
	var returned int // written by b's link from a, read after Flush
	if err := b.Start(func(m lamportmutex.Message) {
		if m.Kind == lamportmutex.Request && m.Clock == 1 {
			<-gate
		}
		if m.Kind == lamportmutex.Request {
			returned++
		}
	}); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 1)
	send(t, a, lamportmutex.Request, "b", 2)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush while b's deliver has not returned = %v, want context.Canceled", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Flush(context.Background()) }()
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if returned != 2 {
		t.Fatalf("Flush returned with %d deliveries done, want 2", returned)
	}

	// Held by a partition: Flush waits, and returns once b's incarnation
	// ends (Restart) or is quarantined.
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 3)
	if err := a.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush of a held message = %v, want context.Canceled", err)
	}
	go func() { done <- a.Flush(context.Background()) }()
	b2, err := n.Restart("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Flush across b's restart: %v", err)
	}
	send(t, a, lamportmutex.Request, "b", 4) // held: b2 not started, and the partition
	go func() { done <- a.Flush(context.Background()) }()
	a.Quarantine("b", b2.Incarnation(), errors.New("test"))
	if err := <-done; err != nil {
		t.Fatalf("Flush across a quarantine of b: %v", err)
	}

	// Held for c, partitioned: a Restart of a ends its Flush with ErrClosed.
	if err := n.Partition("a", "c"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "c", 5)
	go func() { done <- a.Flush(context.Background()) }()
	if _, err := n.Restart("a"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush across a's own restart = %v, want ErrClosed", err)
	}
}

// TestChanCloseFlushes: an endpoint's Close delivers what it sent, within
// ctx; when ctx ends first it still closes, and says so.
func TestChanCloseFlushes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	s := startSinks(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	send(t, a, lamportmutex.Request, "b", 1)
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Links to one receiver deliver in any order: b gets a's PEERUP,
	// REQUEST and PEERDOWN, in that order, and c's PEERUP among them.
	var got []string
	for range 4 {
		got = append(got, s["b"].recv(t).String())
	}
	at := func(w string) int {
		i := slices.Index(got, w)
		if i < 0 {
			t.Fatalf("b got %v, want %s among them", got, w)
		}
		return i
	}
	at("c->b PEERUP#1")
	if up, req, down := at("a->b PEERUP#1"), at("a->b REQUEST@1"), at("a->b PEERDOWN@0"); !(up < req && req < down) {
		t.Fatalf("b got %v: a's PEERUP, REQUEST and PEERDOWN out of order", got)
	}

	if err := n.Partition("b", "c"); err != nil {
		t.Fatal(err)
	}
	send(t, b, lamportmutex.Request, "c", 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a message held = %v, want context.Canceled", err)
	}
	if err := b.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "c"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after a Close that timed out = %v, want ErrClosed", err)
	}
}
