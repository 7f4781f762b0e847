package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// newTestNetwork builds a network and fails the test on error.
func newTestNetwork(t *testing.T, ids []string, opts ChanOptions) *ChanNetwork {
	t.Helper()
	n, err := NewChanNetwork(ids, opts)
	if err != nil {
		t.Fatalf("NewChanNetwork: %v", err)
	}
	return n
}

func endpoint(t *testing.T, n *ChanNetwork, id string) *ChanEndpoint {
	t.Helper()
	ep, err := n.Endpoint(id)
	if err != nil {
		t.Fatalf("Endpoint(%q): %v", id, err)
	}
	return ep
}

// recv reads one message; it fails the test if the channel is closed.
func recv(t *testing.T, ep *ChanEndpoint) lamportmutex.Message {
	t.Helper()
	m, ok := <-ep.Receive()
	if !ok {
		t.Fatalf("%s: Receive channel closed", ep.ID())
	}
	return m
}

// expectPeerUps reads one PeerUp from every peer in from, in that order.
func expectPeerUps(t *testing.T, ep *ChanEndpoint, from ...string) {
	t.Helper()
	for _, f := range from {
		m := recv(t, ep)
		want := lamportmutex.Message{Kind: lamportmutex.PeerUp, From: f, To: ep.ID()}
		if !msgEqual(m, want) {
			t.Fatalf("%s: got %v, want %v", ep.ID(), m, want)
		}
	}
}

func msgEqual(a, b lamportmutex.Message) bool {
	return a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.Clock == b.Clock &&
		string(a.Payload) == string(b.Payload) && (a.Payload == nil) == (b.Payload == nil)
}

func send(t *testing.T, ep *ChanEndpoint, kind lamportmutex.Kind, to string, clock uint64) {
	t.Helper()
	m := lamportmutex.Message{Kind: kind, From: ep.ID(), To: to, Clock: clock}
	if err := ep.Send(context.Background(), m); err != nil {
		t.Fatalf("Send %v: %v", m, err)
	}
}

func expectMsg(t *testing.T, ep *ChanEndpoint, kind lamportmutex.Kind, from string, clock uint64) {
	t.Helper()
	m := recv(t, ep)
	want := lamportmutex.Message{Kind: kind, From: from, To: ep.ID(), Clock: clock}
	if !msgEqual(m, want) {
		t.Fatalf("%s: got %v, want %v", ep.ID(), m, want)
	}
}

// linkQueued returns the number of messages held on link from->to.
func linkQueued(n *ChanNetwork, from, to string) int {
	l := n.links[n.index[from]][n.index[to]]
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

func TestNewChanNetworkRejectsBadIDs(t *testing.T) {
	for _, ids := range [][]string{nil, {}, {"a", ""}, {"a", "b", "a"}} {
		if n, err := NewChanNetwork(ids, ChanOptions{}); err == nil {
			n.Close()
			t.Errorf("NewChanNetwork(%q) succeeded, want error", ids)
		}
	}
}

func TestChanPeerUpFirst(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"a", "b", "c", "d"}
	n := newTestNetwork(t, ids, ChanOptions{})
	defer n.Close()
	// Everyone sends to everyone before anyone reads.
	for _, from := range ids {
		ep := endpoint(t, n, from)
		for _, to := range ids {
			if to != from {
				send(t, ep, lamportmutex.Request, to, 7)
			}
		}
	}
	for _, id := range ids {
		ep := endpoint(t, n, id)
		var others []string
		for _, o := range ids {
			if o != id {
				others = append(others, o)
			}
		}
		expectPeerUps(t, ep, others...)
		got := map[string]bool{}
		for range others {
			m := recv(t, ep)
			if m.Kind != lamportmutex.Request || m.To != id || got[m.From] {
				t.Fatalf("%s: unexpected %v", id, m)
			}
			got[m.From] = true
		}
	}
}

func TestChanSendErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
	defer n.Close()
	a := endpoint(t, n, "a")
	ctx := context.Background()
	cases := []struct {
		name string
		msg  lamportmutex.Message
		want error
	}{
		{"unknown peer", lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "zz"}, ErrUnknownPeer},
		{"to self", lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "a"}, ErrUnknownPeer},
		{"wrong from", lamportmutex.Message{Kind: lamportmutex.Request, From: "b", To: "b"}, ErrWrongSender},
		{"empty from", lamportmutex.Message{Kind: lamportmutex.Request, To: "b"}, ErrWrongSender},
		{"peerup", lamportmutex.Message{Kind: lamportmutex.PeerUp, From: "a", To: "b"}, ErrUnsendable},
		{"kind 0", lamportmutex.Message{From: "a", To: "b"}, ErrUnsendable},
		{"kind 99", lamportmutex.Message{Kind: 99, From: "a", To: "b"}, ErrUnsendable},
	}
	for _, c := range cases {
		if err := a.Send(ctx, c.msg); !errors.Is(err, c.want) {
			t.Errorf("%s: Send(%v) = %v, want %v", c.name, c.msg, err, c.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Send(cctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with cancelled ctx = %v, want context.Canceled", err)
	}
	if _, err := n.Endpoint("zz"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("Endpoint(zz) = %v, want ErrUnknownPeer", err)
	}
	for name, f := range map[string]func() error{
		"Partition":  func() error { return n.Partition("a", "zz") },
		"Heal":       func() error { return n.Heal("zz", "a") },
		"Disconnect": func() error { return n.Disconnect("zz") },
		"Reconnect":  func() error { return n.Reconnect("zz") },
		"Restart":    func() error { _, err := n.Restart("zz"); return err },
	} {
		if err := f(); !errors.Is(err, ErrUnknownPeer) {
			t.Errorf("%s(zz) = %v, want ErrUnknownPeer", name, err)
		}
	}
	if err := n.Partition("a", "a"); err == nil {
		t.Error("Partition(a, a) succeeded")
	}

	// Nothing of the above was delivered: b sees PeerUp(a), then the one
	// valid message.
	b := endpoint(t, n, "b")
	send(t, a, lamportmutex.Release, "b", 3)
	expectPeerUps(t, b, "a")
	expectMsg(t, b, lamportmutex.Release, "a", 3)

	// Endpoint Close: Send fails, Receive closed, idempotent.
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-a.Receive(); ok {
		t.Error("Receive channel of a closed endpoint delivered a message")
	}
	if err := a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}

	// Network Close: everything fails with ErrClosed, idempotent.
	if err := n.Close(); err != nil {
		t.Fatalf("network Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second network Close: %v", err)
	}
	if _, ok := <-b.Receive(); ok {
		t.Error("Receive channel open after network Close")
	}
	if err := b.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after network Close = %v, want ErrClosed", err)
	}
	if _, err := n.Endpoint("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Endpoint after Close = %v, want ErrClosed", err)
	}
	if _, err := n.Restart("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Restart after Close = %v, want ErrClosed", err)
	}
	if err := n.Partition("a", "b"); !errors.Is(err, ErrClosed) {
		t.Errorf("Partition after Close = %v, want ErrClosed", err)
	}
	if err := n.Disconnect("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Disconnect after Close = %v, want ErrClosed", err)
	}
}

// TestChanPayloadIsACopy checks that a message goes through the codec: the
// receiver's payload does not alias the sender's buffer, and nil stays nil.
func TestChanPayloadIsACopy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
	defer n.Close()
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	buf := []byte("block-1")
	ctx := context.Background()
	if err := a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 9, Payload: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXX")
	if err := a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 10, Payload: []byte{}}); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Release, "b", 11)
	expectPeerUps(t, b, "a")
	if m := recv(t, b); string(m.Payload) != "block-1" {
		t.Errorf("payload = %q, want %q (not a copy?)", m.Payload, "block-1")
	}
	if m := recv(t, b); m.Payload == nil || len(m.Payload) != 0 {
		t.Errorf("empty payload arrived as %#v", m.Payload)
	}
	if m := recv(t, b); m.Payload != nil {
		t.Errorf("nil payload arrived as %#v", m.Payload)
	}
}

// TestChanPartitionHeal: messages across a partition are held, not lost,
// and delivered in order on Heal; other links keep working meanwhile.
func TestChanPartitionHeal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer n.Close()
	a, b, c := endpoint(t, n, "a"), endpoint(t, n, "b"), endpoint(t, n, "c")
	expectPeerUps(t, b, "a", "c")
	expectPeerUps(t, c, "a", "b")
	if err := n.Partition("b", "a"); err != nil {
		t.Fatal(err)
	}
	const count = 100
	for i := range count {
		send(t, a, lamportmutex.Request, "b", uint64(i))
		send(t, a, lamportmutex.Request, "c", uint64(i))
	}
	for i := range count {
		expectMsg(t, c, lamportmutex.Request, "a", uint64(i))
	}
	if q := linkQueued(n, "a", "b"); q != count {
		t.Fatalf("held on a->b: %d, want %d", q, count)
	}
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	for i := range count {
		expectMsg(t, b, lamportmutex.Request, "a", uint64(i))
	}
}

// TestChanDisconnectReconnect: Disconnect holds every link of one peer,
// both ways, and a Partition still in force holds its link after Reconnect.
func TestChanDisconnectReconnect(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer n.Close()
	a, b, c := endpoint(t, n, "a"), endpoint(t, n, "b"), endpoint(t, n, "c")
	expectPeerUps(t, a, "b", "c")
	expectPeerUps(t, b, "a", "c")
	expectPeerUps(t, c, "a", "b")
	if err := n.Disconnect("c"); err != nil {
		t.Fatal(err)
	}
	if err := n.Partition("a", "c"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "c", 1)
	send(t, b, lamportmutex.Request, "c", 2)
	send(t, c, lamportmutex.Reply, "a", 3)
	send(t, c, lamportmutex.Reply, "b", 4)
	send(t, a, lamportmutex.Request, "b", 5) // not affected
	expectMsg(t, b, lamportmutex.Request, "a", 5)
	for _, p := range [][2]string{{"a", "c"}, {"b", "c"}, {"c", "a"}, {"c", "b"}} {
		if q := linkQueued(n, p[0], p[1]); q != 1 {
			t.Fatalf("held on %s->%s: %d, want 1", p[0], p[1], q)
		}
	}
	if err := n.Reconnect("c"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, c, lamportmutex.Request, "b", 2)
	expectMsg(t, b, lamportmutex.Reply, "c", 4)
	// a<->c is still partitioned.
	if qa, qc := linkQueued(n, "a", "c"), linkQueued(n, "c", "a"); qa != 1 || qc != 1 {
		t.Fatalf("held on a->c, c->a: %d, %d, want 1, 1", qa, qc)
	}
	if err := n.Heal("c", "a"); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, c, lamportmutex.Request, "a", 1)
	expectMsg(t, a, lamportmutex.Reply, "c", 3)
}

// TestChanRestart checks the incarnation rules of the contract.
func TestChanRestart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer n.Close()
	a, b, c := endpoint(t, n, "a"), endpoint(t, n, "b"), endpoint(t, n, "c")
	expectPeerUps(t, b, "a", "c")
	expectPeerUps(t, c, "a", "b")

	send(t, a, lamportmutex.Request, "b", 1) // delivered to b's inbox
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 2) // held, then dropped by the restart
	send(t, a, lamportmutex.Request, "b", 3)
	send(t, b, lamportmutex.Reply, "a", 4) // to the old a: dropped
	// c is down; a message to it is held.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Reply, "c", 5)

	a2, err := n.Restart("a")
	if err != nil {
		t.Fatal(err)
	}
	if a2 == a {
		t.Fatal("Restart returned the old endpoint")
	}
	if got := endpoint(t, n, "a"); got != a2 {
		t.Fatal("Endpoint(a) is not the new incarnation")
	}
	if err := a.Send(context.Background(), lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send on the old incarnation = %v, want ErrClosed", err)
	}
	for range a.Receive() {
		// Messages not received before the restart are gone; the channel
		// must be closed.
	}

	expectPeerUps(t, a2, "b", "c")
	// b: the message that reached it before the restart; PeerUp(a) is held
	// by the partition, alone on the link.
	expectMsg(t, b, lamportmutex.Request, "a", 1)
	if q := linkQueued(n, "a", "b"); q != 1 {
		t.Fatalf("a->b holds %d after the restart, want 1 (PeerUp)", q)
	}

	send(t, a2, lamportmutex.Request, "b", 10)
	send(t, b, lamportmutex.Reply, "a", 11)
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	expectPeerUps(t, b, "a")
	expectMsg(t, b, lamportmutex.Request, "a", 10) // not 2 or 3
	expectMsg(t, a2, lamportmutex.Reply, "b", 11)  // not 4

	// c is down: a's restart dropped message 5 to it; PeerUp(a) and a new
	// message are held for it, and dropped by c's restart.
	if q := linkQueued(n, "a", "c"); q != 1 {
		t.Fatalf("a->c holds %d after a's restart, want 1 (PeerUp)", q)
	}
	send(t, a2, lamportmutex.Reply, "c", 12)
	if q := linkQueued(n, "a", "c"); q != 2 {
		t.Fatalf("a->c holds %d while c is down, want 2", q)
	}
	c2, err := n.Restart("c")
	if err != nil {
		t.Fatal(err)
	}
	if q := linkQueued(n, "a", "c"); q != 0 {
		t.Fatalf("a->c holds %d after c's restart, want 0", q)
	}
	send(t, a2, lamportmutex.Request, "c", 14)
	send(t, b, lamportmutex.Request, "c", 13)
	expectPeerUps(t, c2, "a", "b")
	got := map[string]bool{}
	for range 2 {
		got[recv(t, c2).String()] = true
	}
	if !got["a->c REQUEST@14"] || !got["b->c REQUEST@13"] {
		t.Fatalf("c2 got %v, want a->c REQUEST@14 and b->c REQUEST@13", got)
	}
	expectPeerUps(t, a2, "c")
	expectPeerUps(t, b, "c")
}

// TestChanSendRespectsCtx: with a QueueLimit, Send on a full link blocks
// until its ctx is done, or until the receiver takes a message.
func TestChanSendRespectsCtx(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{QueueLimit: 2})
	blocked := make(chan struct{}, 4)
	n.testHookSendBlocked = func() { blocked <- struct{}{} }
	defer n.Close()
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 1)
	send(t, a, lamportmutex.Request, "b", 2)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- a.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: 3})
	}()
	<-blocked
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked Send = %v, want context.Canceled", err)
	}

	// A blocked Send completes once the receiver makes room.
	go func() {
		errc <- a.Send(context.Background(), lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: 4})
	}()
	<-blocked
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	expectPeerUps(t, b, "a")
	expectMsg(t, b, lamportmutex.Request, "a", 1)
	if err := <-errc; err != nil {
		t.Fatalf("Send after room was made: %v", err)
	}
	expectMsg(t, b, lamportmutex.Request, "a", 2)
	expectMsg(t, b, lamportmutex.Request, "a", 4) // 3 was never queued

	// A Send blocked on a full link fails with ErrClosed when the network
	// closes.
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 5)
	send(t, a, lamportmutex.Request, "b", 6)
	go func() {
		errc <- a.Send(context.Background(), lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: 7})
	}()
	<-blocked
	n.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Send blocked across Close = %v, want ErrClosed", err)
	}
}

// streamPayload encodes (stream, seq) into a payload.
func streamPayload(stream uint32, seq uint64) []byte {
	p := make([]byte, 12)
	binary.BigEndian.PutUint32(p, stream)
	binary.BigEndian.PutUint64(p[4:], seq)
	return p
}

func parseStreamPayload(p []byte) (stream uint32, seq uint64, ok bool) {
	if len(p) != 12 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(p), binary.BigEndian.Uint64(p[4:]), true
}

// TestChanFIFOExactlyOnce sends numbered streams between every pair of
// peers from many goroutines at once, under random delays (and, in one
// variant, partitions and disconnections toggled at random meanwhile), and
// checks that every stream arrives complete, in order and without
// duplicates, and that OnSend and OnDeliver saw exactly those messages.
func TestChanFIFOExactlyOnce(t *testing.T) {
	for _, faults := range []bool{false, true} {
		t.Run(fmt.Sprintf("faults=%v", faults), func(t *testing.T) {
			testChanFIFOExactlyOnce(t, faults)
		})
	}
}

func testChanFIFOExactlyOnce(t *testing.T, faults bool) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"a", "b", "c", "d"}
	const (
		streamsPerPair = 3
		perStream      = 400
	)
	var sent, delivered atomic.Int64
	opts := ChanOptions{
		Seed:      42,
		MaxDelay:  200 * time.Microsecond,
		OnSend:    func(lamportmutex.Message) { sent.Add(1) },
		OnDeliver: func(lamportmutex.Message) { delivered.Add(1) },
	}
	if faults {
		// Most messages undelayed, some delayed: undelayed ones must not
		// overtake delayed or held ones.
		opts.Delay = func(m lamportmutex.Message) time.Duration {
			if m.Clock%4 != 0 {
				return 0
			}
			return time.Duration(m.Clock%7) * 30 * time.Microsecond
		}
	}
	n := newTestNetwork(t, ids, opts)
	defer n.Close()

	var recvWG sync.WaitGroup
	for _, id := range ids {
		ep := endpoint(t, n, id)
		recvWG.Add(1)
		go func() {
			defer recvWG.Done()
			next := map[string]uint64{} // "from/stream" -> next seq
			want := (len(ids) - 1) * streamsPerPair * perStream
			peerUps := 0
			for got := 0; got < want; {
				m, ok := <-ep.Receive()
				if !ok {
					t.Errorf("%s: Receive closed after %d of %d", id, got, want)
					return
				}
				if m.Kind == lamportmutex.PeerUp {
					if got > 0 || m.To != id {
						t.Errorf("%s: unexpected %v", id, m)
					}
					peerUps++
					continue
				}
				stream, seq, ok := parseStreamPayload(m.Payload)
				if !ok || m.To != id || m.Kind != lamportmutex.Request || m.Clock != seq {
					t.Errorf("%s: malformed %v", id, m)
					return
				}
				key := fmt.Sprintf("%s/%d", m.From, stream)
				if seq != next[key] {
					t.Errorf("%s: stream %s: got seq %d, want %d", id, key, seq, next[key])
					return
				}
				next[key]++
				got++
			}
			if peerUps != len(ids)-1 {
				t.Errorf("%s: %d PeerUps, want %d", id, peerUps, len(ids)-1)
			}
		}()
	}

	var sendWG sync.WaitGroup
	for _, from := range ids {
		ep := endpoint(t, n, from)
		for _, to := range ids {
			if to == from {
				continue
			}
			for s := range streamsPerPair {
				sendWG.Add(1)
				go func() {
					defer sendWG.Done()
					for seq := range uint64(perStream) {
						m := lamportmutex.Message{Kind: lamportmutex.Request, From: from, To: to, Clock: seq,
							Payload: streamPayload(uint32(s), seq)}
						if err := ep.Send(context.Background(), m); err != nil {
							t.Errorf("Send %v: %v", m, err)
							return
						}
					}
				}()
			}
		}
	}

	if faults {
		rng := rand.New(rand.NewPCG(7, 7))
		sendDone := make(chan struct{})
		go func() { sendWG.Wait(); close(sendDone) }()
	loop:
		for {
			select {
			case <-sendDone:
				break loop
			default:
			}
			x, y := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
			var err error
			switch rng.IntN(4) {
			case 0:
				if x != y {
					err = n.Partition(x, y)
				}
			case 1:
				if x != y {
					err = n.Heal(x, y)
				}
			case 2:
				err = n.Disconnect(x)
			case 3:
				err = n.Reconnect(x)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for i, x := range ids {
			if err := n.Reconnect(x); err != nil {
				t.Fatal(err)
			}
			for _, y := range ids[i+1:] {
				if err := n.Heal(x, y); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sendWG.Wait()
	recvWG.Wait()
	total := int64(len(ids) * (len(ids) - 1) * streamsPerPair * perStream)
	if got := sent.Load(); got != total {
		t.Errorf("OnSend saw %d messages, want %d", got, total)
	}
	if got, want := delivered.Load(), total+int64(len(ids)*(len(ids)-1)); got != want {
		t.Errorf("OnDeliver saw %d messages, want %d", got, want)
	}
}

// TestChanRestartUnderLoad restarts peers at random while every peer sends
// to every other, and checks the incarnation rules from each receiver's
// view: per sender incarnation, messages arrive contiguous and in order;
// nothing of an old incarnation arrives after its successor's PeerUp; a new
// incarnation's first message is preceded by a PeerUp. A final round shows
// every link still works.
func TestChanRestartUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"a", "b", "c"}
	n := newTestNetwork(t, ids, ChanOptions{Seed: 3, MaxDelay: 50 * time.Microsecond, QueueLimit: 64})
	defer n.Close()

	type senderState struct {
		lastInc    int64 // -1: none yet
		lastSeq    uint64
		peerUpSeen bool
	}
	const restarts = 8
	const progress = 150 // messages the victim sends before each restart
	var (
		wg        sync.WaitGroup
		finMu     sync.Mutex
		finSeen   = map[string]map[string]bool{} // receiver -> senders whose fin arrived
		finAll    = make(chan struct{})
		finClosed bool
	)
	ctx, cancelSenders := context.WithCancel(context.Background())
	defer cancelSenders()

	// start runs the sender and receiver of one incarnation; progressed is
	// closed once the sender has sent `progress` messages.
	start := func(ep *ChanEndpoint, inc int64) (progressed chan struct{}, senderDone chan struct{}) {
		progressed = make(chan struct{})
		senderDone = make(chan struct{})
		wg.Add(2)
		go func() { // receiver
			defer wg.Done()
			st := map[string]*senderState{}
			for _, o := range ids {
				st[o] = &senderState{lastInc: -1}
			}
			for m := range ep.Receive() {
				s := st[m.From]
				if m.Kind == lamportmutex.PeerUp {
					s.peerUpSeen = true
					continue
				}
				if m.Kind == lamportmutex.Release { // fin
					finMu.Lock()
					if finSeen[ep.ID()] == nil {
						finSeen[ep.ID()] = map[string]bool{}
					}
					finSeen[ep.ID()][m.From] = true
					total := 0
					for _, f := range finSeen {
						total += len(f)
					}
					if total == len(ids)*(len(ids)-1) && !finClosed {
						finClosed = true
						close(finAll)
					}
					finMu.Unlock()
					continue
				}
				sInc, seq, ok := parseStreamPayload(m.Payload)
				inc := int64(sInc)
				switch {
				case !ok:
					t.Errorf("%s: malformed %v", ep.ID(), m)
				case inc < s.lastInc:
					t.Errorf("%s: from %s: incarnation %d after %d", ep.ID(), m.From, inc, s.lastInc)
				case inc > s.lastInc:
					if !s.peerUpSeen {
						t.Errorf("%s: from %s: incarnation %d without PeerUp", ep.ID(), m.From, inc)
					}
				case s.peerUpSeen:
					t.Errorf("%s: from %s: incarnation %d after a PeerUp", ep.ID(), m.From, inc)
				case seq != s.lastSeq+1:
					t.Errorf("%s: from %s/%d: seq %d after %d", ep.ID(), m.From, inc, seq, s.lastSeq)
				}
				s.lastInc, s.lastSeq, s.peerUpSeen = inc, seq, false
			}
		}()
		go func() { // sender: round robin to the others until closed or cancelled
			defer wg.Done()
			defer close(senderDone)
			var others []string
			for _, o := range ids {
				if o != ep.ID() {
					others = append(others, o)
				}
			}
			for seq := uint64(0); ; seq++ {
				if seq == progress {
					close(progressed)
				}
				for _, to := range others {
					err := ep.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Request, From: ep.ID(), To: to,
						Payload: streamPayload(uint32(inc), seq)})
					if errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) {
						if seq < progress {
							close(progressed)
						}
						return
					}
					if err != nil {
						t.Errorf("Send: %v", err)
						return
					}
				}
			}
		}()
		return progressed, senderDone
	}

	progressed := map[string]chan struct{}{}
	senderDone := map[string]chan struct{}{}
	incs := map[string]int64{}
	for _, id := range ids {
		progressed[id], senderDone[id] = start(endpoint(t, n, id), 0)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range restarts {
		victim := ids[rng.IntN(len(ids))]
		<-progressed[victim]
		ep, err := n.Restart(victim)
		if err != nil {
			t.Fatal(err)
		}
		<-senderDone[victim]
		incs[victim]++
		progressed[victim], senderDone[victim] = start(ep, incs[victim])
	}
	cancelSenders()
	for _, id := range ids {
		<-senderDone[id]
	}
	// Every link still delivers.
	for _, from := range ids {
		ep := endpoint(t, n, from)
		for _, to := range ids {
			if to != from {
				send(t, ep, lamportmutex.Release, to, 0)
			}
		}
	}
	<-finAll
	n.Close()
	wg.Wait()
}

// TestChanDelayKeepsFIFO: a message without delay never overtakes a
// delayed one sent before it on the same link.
func TestChanDelayKeepsFIFO(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{
		Delay: func(m lamportmutex.Message) time.Duration {
			if m.Clock%10 == 0 {
				return time.Millisecond
			}
			return 0
		},
	})
	defer n.Close()
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	const count = 200
	for i := range count {
		send(t, a, lamportmutex.Request, "b", uint64(i))
	}
	expectPeerUps(t, b, "a")
	for i := range count {
		expectMsg(t, b, lamportmutex.Request, "a", uint64(i))
	}
}

func TestChanSeededDelayIsRepeatable(t *testing.T) {
	draws := func(seed int64) []time.Duration {
		n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{Seed: seed, MaxDelay: time.Second})
		defer n.Close()
		l := n.links[0][1]
		var d []time.Duration
		l.mu.Lock()
		for range 20 {
			d = append(d, l.delay(lamportmutex.Message{}))
		}
		l.mu.Unlock()
		return d
	}
	x, y, z := draws(1), draws(1), draws(2)
	if fmt.Sprint(x) != fmt.Sprint(y) {
		t.Errorf("same seed, different delays:\n%v\n%v", x, y)
	}
	if fmt.Sprint(x) == fmt.Sprint(z) {
		t.Errorf("different seeds, same delays: %v", x)
	}
	for _, d := range x {
		if d < 0 || d > time.Second {
			t.Errorf("delay %v outside [0, 1s]", d)
		}
	}
}
