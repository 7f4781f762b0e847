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

// chanSinkCap is how many deliveries a chanSink holds unread.
const chanSinkCap = 1 << 16

// chanSink is a started endpoint whose deliveries a test reads in order.
// Its deliver never blocks: a delivery that finds the sink full fails the
// test.
type chanSink struct {
	ep *ChanEndpoint
	ch chan lamportmutex.Message
}

// startSink starts ep with a deliver function that queues into a sink.
func startSink(t *testing.T, ep *ChanEndpoint) *chanSink {
	t.Helper()
	s := &chanSink{ep: ep, ch: make(chan lamportmutex.Message, chanSinkCap)}
	if err := ep.Start(func(m lamportmutex.Message) {
		select {
		case s.ch <- m:
		default:
			t.Errorf("%s: sink full, dropped %v", ep.ID(), m)
		}
	}); err != nil {
		t.Fatalf("Start(%s): %v", ep.ID(), err)
	}
	return s
}

// startSinks starts every endpoint of n and returns their sinks by id.
func startSinks(t *testing.T, n *ChanNetwork) map[string]*chanSink {
	t.Helper()
	sinks := map[string]*chanSink{}
	for _, id := range n.IDs() {
		sinks[id] = startSink(t, endpoint(t, n, id))
	}
	return sinks
}

// expectSet reads len(want) deliveries and checks that they are want, as
// formatted by Message.String, in any order.
func expectSet(t *testing.T, s *chanSink, want ...string) {
	t.Helper()
	got := map[string]bool{}
	for range want {
		got[s.recv(t).String()] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Fatalf("%s got %v, want %v", s.ep.ID(), got, want)
		}
	}
}

// expectPeerDowns reads one PeerDown from every peer in from, in any
// order.
func (s *chanSink) expectPeerDowns(t *testing.T, from ...string) {
	t.Helper()
	var want []string
	for _, f := range from {
		want = append(want, f+"->"+s.ep.ID()+" PEERDOWN@0")
	}
	expectSet(t, s, want...)
}

// recv waits for the next delivery.
func (s *chanSink) recv(t *testing.T) lamportmutex.Message {
	t.Helper()
	return <-s.ch
}

// empty reports whether nothing delivered is unread.
func (s *chanSink) empty() bool { return len(s.ch) == 0 }

// expectPeerUps reads one PeerUp from every peer in from, in any order
// (links deliver independently).
func (s *chanSink) expectPeerUps(t *testing.T, from ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, f := range from {
		want[f] = true
	}
	for range from {
		m := s.recv(t)
		if m.Kind != lamportmutex.PeerUp || m.To != s.ep.ID() || !want[m.From] {
			t.Fatalf("%s: got %v, want a PeerUp from one of %v", s.ep.ID(), m, want)
		}
		delete(want, m.From)
	}
}

// expect reads one delivery and checks it.
func (s *chanSink) expect(t *testing.T, kind lamportmutex.Kind, from string, clock uint64) {
	t.Helper()
	m := s.recv(t)
	want := lamportmutex.Message{Kind: kind, From: from, To: s.ep.ID(), Clock: clock}
	if !msgEqual(m, want) {
		t.Fatalf("%s: got %v, want %v", s.ep.ID(), m, want)
	}
}

// expectDown reads one delivery and checks that it is PeerDown(from).
func (s *chanSink) expectDown(t *testing.T, from string) {
	t.Helper()
	if m := s.recv(t); m.Kind != lamportmutex.PeerDown || m.From != from || m.To != s.ep.ID() {
		t.Fatalf("%s: got %v, want PeerDown from %s", s.ep.ID(), m, from)
	}
}

func msgEqual(a, b lamportmutex.Message) bool {
	return a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.Clock == b.Clock &&
		string(a.Payload) == string(b.Payload) && (a.Payload == nil) == (b.Payload == nil)
}

func send(t *testing.T, ep *ChanEndpoint, kind lamportmutex.Kind, to string, clock uint64) {
	t.Helper()
	m := lamportmutex.Message{Kind: kind, From: ep.ID(), To: to, Clock: clock}
	if err := ep.Send(m); err != nil {
		t.Fatalf("Send %v: %v", m, err)
	}
}

// flush flushes ep and fails the test on error.
func flush(t *testing.T, ep *ChanEndpoint) {
	t.Helper()
	if err := ep.Flush(context.Background()); err != nil {
		t.Fatalf("Flush(%s): %v", ep.ID(), err)
	}
}

// closeNet closes n and fails the test on error.
func closeNet(t *testing.T, n *ChanNetwork) {
	t.Helper()
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("network Close: %v", err)
	}
}

// linkQueued returns the number of messages held on link from->to
// (markers not counted).
func linkQueued(n *ChanNetwork, from, to string) int {
	l := n.links[n.index[from]][n.index[to]]
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, q := range l.queue {
		if q.seq > 0 {
			c++
		}
	}
	return c
}

func TestNewChanNetworkRejectsBadIDs(t *testing.T) {
	for _, ids := range [][]string{nil, {}, {"a", ""}, {"a", "b", "a"}} {
		if n, err := NewChanNetwork(ids, ChanOptions{}); err == nil {
			closeNet(t, n)
			t.Errorf("NewChanNetwork(%q) succeeded, want error", ids)
		}
	}
	if n, err := NewChanNetwork([]string{"a", "b"}, ChanOptions{QueueBytes: -1}); err == nil {
		closeNet(t, n)
		t.Error("NewChanNetwork with negative QueueBytes succeeded")
	}
}

// TestChanPeerUpFirst: from every peer, the first delivery is its PeerUp,
// even when it sent before the receiver started, and nothing is delivered
// before Start.
func TestChanPeerUpFirst(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"a", "b", "c", "d"}
	n := newTestNetwork(t, ids, ChanOptions{})
	defer closeNet(t, n)
	for _, from := range ids {
		ep := endpoint(t, n, from)
		for _, to := range ids {
			if to != from {
				send(t, ep, lamportmutex.Request, to, 7)
			}
		}
	}
	sinks := startSinks(t, n)
	for _, id := range ids {
		peerUp := map[string]bool{}
		got := map[string]bool{}
		for range 2 * (len(ids) - 1) {
			m := sinks[id].recv(t)
			switch {
			case m.To != id:
				t.Fatalf("%s: got %v", id, m)
			case m.Kind == lamportmutex.PeerUp && !peerUp[m.From] && m.Incarnation == 1:
				peerUp[m.From] = true
			case m.Kind == lamportmutex.Request && peerUp[m.From] && !got[m.From]:
				got[m.From] = true
			default:
				t.Fatalf("%s: unexpected %v (PeerUps %v, requests %v)", id, m, peerUp, got)
			}
		}
	}
}

func TestChanSendErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{QueueBytes: 4096})
	defer closeNet(t, n)
	a := endpoint(t, n, "a")
	if got := a.MaxPayload(); got != 1024 {
		t.Errorf("MaxPayload = %d, want 1024 (a quarter of QueueBytes)", got)
	}
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
		{"peerdown", lamportmutex.Message{Kind: lamportmutex.PeerDown, From: "a", To: "b"}, ErrUnsendable},
		{"kind 0", lamportmutex.Message{From: "a", To: "b"}, ErrUnsendable},
		{"kind 99", lamportmutex.Message{Kind: 99, From: "a", To: "b"}, ErrUnsendable},
		{"payload too large", lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b",
			Payload: make([]byte, 1025)}, lamportmutex.ErrPayloadTooLarge},
	}
	for _, c := range cases {
		if err := a.Send(c.msg); !errors.Is(err, c.want) {
			t.Errorf("%s: Send(%v) = %v, want %v", c.name, c.msg, err, c.want)
		}
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
	// valid message, with the largest payload.
	b := endpoint(t, n, "b")
	sb := startSink(t, b)
	if err := b.Start(func(lamportmutex.Message) {}); err == nil {
		t.Error("second Start succeeded")
	}
	big := lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 3, Payload: make([]byte, 1024)}
	if err := a.Send(big); err != nil {
		t.Fatalf("Send with MaxPayload bytes: %v", err)
	}
	sb.expectPeerUps(t, "a")
	if m := sb.recv(t); !msgEqual(m, big) {
		t.Fatalf("got %v, want %v", m, big)
	}

	// Endpoint Close: Send, Flush and Start fail with ErrClosed (which is
	// lamportmutex.ErrClosed too); a second Close returns nil.
	ctx := context.Background()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Send":  a.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b"}),
		"Flush": a.Flush(ctx),
		"Start": a.Start(func(lamportmutex.Message) {}),
	} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, lamportmutex.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed and lamportmutex.ErrClosed", name, err)
		}
	}
	sb.expectDown(t, "a")

	// Network Close: everything fails with ErrClosed; a second Close
	// returns nil.
	if err := n.Close(ctx); err != nil {
		t.Fatalf("network Close: %v", err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatalf("second network Close: %v", err)
	}
	if err := b.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after network Close = %v, want ErrClosed", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("endpoint Close after network Close = %v, want nil", err)
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
	if !sb.empty() {
		t.Errorf("b got %v after the network closed", sb.recv(t))
	}
}

// TestChanPayloadIsACopy checks that a message goes through the codec: the
// receiver's payload does not alias the sender's buffer, and nil stays nil.
func TestChanPayloadIsACopy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
	defer closeNet(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	buf := []byte("block-1")
	if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 9, Payload: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXX")
	if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 10, Payload: []byte{}}); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Release, "b", 11)
	sb := startSink(t, b)
	sb.expectPeerUps(t, "a")
	if m := sb.recv(t); string(m.Payload) != "block-1" {
		t.Errorf("payload = %q, want %q (not a copy?)", m.Payload, "block-1")
	}
	if m := sb.recv(t); m.Payload == nil || len(m.Payload) != 0 {
		t.Errorf("empty payload arrived as %#v", m.Payload)
	}
	if m := sb.recv(t); m.Payload != nil {
		t.Errorf("nil payload arrived as %#v", m.Payload)
	}
}

// TestChanPartitionHeal: messages across a partition are held, not lost,
// and delivered in order on Heal, after one PeerDown for the cut and no
// PeerUp for the reconnect; other links keep working meanwhile.
func TestChanPartitionHeal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	s := startSinks(t, n)
	a := endpoint(t, n, "a")
	s["a"].expectPeerUps(t, "b", "c")
	s["b"].expectPeerUps(t, "a", "c")
	s["c"].expectPeerUps(t, "a", "b")
	if err := n.Partition("b", "a"); err != nil {
		t.Fatal(err)
	}
	s["a"].expectDown(t, "b")
	s["b"].expectDown(t, "a")
	const count = 100
	for i := range count {
		send(t, a, lamportmutex.Request, "b", uint64(i))
		send(t, a, lamportmutex.Request, "c", uint64(i))
	}
	for i := range count {
		s["c"].expect(t, lamportmutex.Request, "a", uint64(i))
	}
	if q := linkQueued(n, "a", "b"); q != count {
		t.Fatalf("held on a->b: %d, want %d", q, count)
	}
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	for i := range count {
		s["b"].expect(t, lamportmutex.Request, "a", uint64(i))
	}
	// A second cut after the reconnect is reported again.
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	s["b"].expectDown(t, "a")
	s["a"].expectDown(t, "b")
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	send(t, a, lamportmutex.Request, "b", 500)
	s["b"].expect(t, lamportmutex.Request, "a", 500)
}

// TestChanDisconnectReconnect: Disconnect holds every link of one peer,
// both ways, and a Partition still in force holds its link after
// Reconnect. A link cut by both gets one PeerDown.
func TestChanDisconnectReconnect(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	s := startSinks(t, n)
	a, b, c := endpoint(t, n, "a"), endpoint(t, n, "b"), endpoint(t, n, "c")
	s["a"].expectPeerUps(t, "b", "c")
	s["b"].expectPeerUps(t, "a", "c")
	s["c"].expectPeerUps(t, "a", "b")
	if err := n.Disconnect("c"); err != nil {
		t.Fatal(err)
	}
	if err := n.Partition("a", "c"); err != nil {
		t.Fatal(err)
	}
	s["a"].expectDown(t, "c")
	s["b"].expectDown(t, "c")
	s["c"].expectPeerDowns(t, "a", "b")
	send(t, a, lamportmutex.Request, "c", 1)
	send(t, b, lamportmutex.Request, "c", 2)
	send(t, c, lamportmutex.Reply, "a", 3)
	send(t, c, lamportmutex.Reply, "b", 4)
	send(t, a, lamportmutex.Request, "b", 5) // not affected
	s["b"].expect(t, lamportmutex.Request, "a", 5)
	for _, p := range [][2]string{{"a", "c"}, {"b", "c"}, {"c", "a"}, {"c", "b"}} {
		if q := linkQueued(n, p[0], p[1]); q != 1 {
			t.Fatalf("held on %s->%s: %d, want 1", p[0], p[1], q)
		}
	}
	if err := n.Reconnect("c"); err != nil {
		t.Fatal(err)
	}
	s["c"].expect(t, lamportmutex.Request, "b", 2)
	s["b"].expect(t, lamportmutex.Reply, "c", 4)
	// a<->c is still partitioned.
	if qa, qc := linkQueued(n, "a", "c"), linkQueued(n, "c", "a"); qa != 1 || qc != 1 {
		t.Fatalf("held on a->c, c->a: %d, %d, want 1, 1", qa, qc)
	}
	if err := n.Heal("c", "a"); err != nil {
		t.Fatal(err)
	}
	s["c"].expect(t, lamportmutex.Request, "a", 1)
	s["a"].expect(t, lamportmutex.Reply, "c", 3)
	flush(t, a)
	flush(t, b)
	flush(t, c)
	for id, sk := range s {
		if !sk.empty() {
			t.Errorf("%s got %v, want nothing more", id, sk.recv(t))
		}
	}
}

// TestChanRestart checks the incarnation rules of the contract.
func TestChanRestart(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b", "c"}, ChanOptions{})
	defer closeNet(t, n)
	a, b, c := endpoint(t, n, "a"), endpoint(t, n, "b"), endpoint(t, n, "c")
	sa, sb := startSink(t, a), startSink(t, b)
	startSink(t, c)
	sb.expectPeerUps(t, "a", "c")
	sa.expectPeerUps(t, "b", "c")

	send(t, a, lamportmutex.Request, "b", 1) // delivered to b
	flush(t, a)
	if err := n.Partition("a", "b"); err != nil {
		t.Fatal(err)
	}
	sb.expect(t, lamportmutex.Request, "a", 1)
	sb.expectDown(t, "a")
	sa.expectDown(t, "b")
	send(t, a, lamportmutex.Request, "b", 2) // held, then dropped by the restart
	send(t, a, lamportmutex.Request, "b", 3)
	send(t, b, lamportmutex.Reply, "a", 4) // to the old a: dropped
	// c is down; a message to it is held.
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sa.expectDown(t, "c")
	sb.expectDown(t, "c")
	send(t, a, lamportmutex.Reply, "c", 5)

	a2, err := n.Restart("a")
	if err != nil {
		t.Fatal(err)
	}
	if a2 == a || a2.Incarnation() != 2 {
		t.Fatalf("Restart returned %p incarnation %d, want a new endpoint of incarnation 2", a2, a2.Incarnation())
	}
	if got := endpoint(t, n, "a"); got != a2 {
		t.Fatal("Endpoint(a) is not the new incarnation")
	}
	if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send on the old incarnation = %v, want ErrClosed", err)
	}
	if !sa.empty() {
		t.Errorf("the old a got %v after its restart", sa.recv(t))
	}

	// The new a hears PeerUp from b (across the partition) and from c
	// (closed), each followed by PeerDown: neither is connected.
	sa2 := startSink(t, a2)
	expectSet(t, sa2, "b->a PEERUP#1", "b->a PEERDOWN@0", "c->a PEERUP#1", "c->a PEERDOWN@0")
	// b: PeerUp(a#2) is held by the partition, alone on the link.
	if q := linkQueued(n, "a", "b"); q != 0 {
		t.Fatalf("a->b holds %d messages after the restart, want 0", q)
	}
	send(t, a2, lamportmutex.Request, "b", 10)
	send(t, b, lamportmutex.Reply, "a", 11)
	if err := n.Heal("a", "b"); err != nil {
		t.Fatal(err)
	}
	if m := sb.recv(t); m.Kind != lamportmutex.PeerUp || m.From != "a" || m.Incarnation != 2 {
		t.Fatalf("b got %v, want PeerUp of a#2", m)
	}
	sb.expect(t, lamportmutex.Request, "a", 10) // not 2 or 3
	sa2.expect(t, lamportmutex.Reply, "b", 11)  // not 4

	// c is down: a's restart dropped message 5 to it; a message sent now
	// is held for it, and c's restart drops it.
	send(t, a2, lamportmutex.Reply, "c", 12)
	if q := linkQueued(n, "a", "c"); q != 1 {
		t.Fatalf("a->c holds %d while c is down, want 1", q)
	}
	flush(t, a2) // c's incarnation ended: nothing to wait for
	c2, err := n.Restart("c")
	if err != nil {
		t.Fatal(err)
	}
	if q := linkQueued(n, "a", "c"); q != 0 {
		t.Fatalf("a->c holds %d after c's restart, want 0", q)
	}
	send(t, a2, lamportmutex.Request, "c", 14)
	send(t, b, lamportmutex.Request, "c", 13)
	sc2 := startSink(t, c2)
	expectSet(t, sc2, "a->c PEERUP#2", "b->c PEERUP#1", "a->c REQUEST@14", "b->c REQUEST@13")
	if m := sb.recv(t); m.Kind != lamportmutex.PeerUp || m.From != "c" || m.Incarnation != 2 {
		t.Fatalf("b got %v, want PeerUp of c#2", m)
	}
	if m := sa2.recv(t); m.Kind != lamportmutex.PeerUp || m.From != "c" || m.Incarnation != 2 {
		t.Fatalf("a2 got %v, want PeerUp of c#2", m)
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
	defer closeNet(t, n)

	var recvWG sync.WaitGroup
	var downs atomic.Int64
	for _, id := range ids {
		ep := endpoint(t, n, id)
		recvWG.Add(1)
		var (
			mu      sync.Mutex
			next    = map[string]uint64{} // "from/stream" -> next seq
			peerUps = map[string]int{}
			got     int
			want    = (len(ids) - 1) * streamsPerPair * perStream
		)
		err := ep.Start(func(m lamportmutex.Message) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case m.To != id:
				t.Errorf("%s: unexpected %v", id, m)
				return
			case m.Kind == lamportmutex.PeerUp:
				if peerUps[m.From]++; peerUps[m.From] > 1 {
					t.Errorf("%s: second PeerUp %v", id, m)
				}
				return
			case peerUps[m.From] == 0:
				t.Errorf("%s: %v before PeerUp", id, m)
				return
			case m.Kind == lamportmutex.PeerDown:
				downs.Add(1)
				return
			}
			stream, seq, ok := parseStreamPayload(m.Payload)
			if !ok || m.Kind != lamportmutex.Request || m.Clock != seq {
				t.Errorf("%s: malformed %v", id, m)
				return
			}
			key := fmt.Sprintf("%s/%d", m.From, stream)
			if seq != next[key] {
				t.Errorf("%s: stream %s: got seq %d, want %d", id, key, seq, next[key])
			}
			next[key] = seq + 1
			if got++; got == want {
				recvWG.Done()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
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
						if err := ep.Send(m); err != nil {
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
	closeNet(t, n) // no deliver call runs after: the counts are final
	if got, want := delivered.Load(), total+int64(len(ids)*(len(ids)-1))+downs.Load(); got != want {
		t.Errorf("OnDeliver saw %d messages, want %d", got, want)
	}
	if !faults && downs.Load() != 0 {
		t.Errorf("%d PeerDowns without a fault", downs.Load())
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
	n := newTestNetwork(t, ids, ChanOptions{Seed: 3, MaxDelay: 50 * time.Microsecond, QueueBytes: 2048})
	defer closeNet(t, n)

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
		fulls     atomic.Int64
	)
	ctx, cancelSenders := context.WithCancel(context.Background())
	defer cancelSenders()

	fin := func(to, from string) {
		finMu.Lock()
		defer finMu.Unlock()
		if finSeen[to] == nil {
			finSeen[to] = map[string]bool{}
		}
		finSeen[to][from] = true
		total := 0
		for _, f := range finSeen {
			total += len(f)
		}
		if total == len(ids)*(len(ids)-1) && !finClosed {
			finClosed = true
			close(finAll)
		}
	}

	// start runs the receiver and sender of one incarnation; progressed is
	// closed once the sender has sent `progress` messages.
	start := func(ep *ChanEndpoint, inc int64) (progressed chan struct{}, senderDone chan struct{}) {
		progressed = make(chan struct{})
		senderDone = make(chan struct{})
		st := map[string]*senderState{} // each entry touched only by its sender's link
		for _, o := range ids {
			st[o] = &senderState{lastInc: -1}
		}
		err := ep.Start(func(m lamportmutex.Message) {
			s := st[m.From]
			switch m.Kind {
			case lamportmutex.PeerUp:
				s.peerUpSeen = true
				return
			case lamportmutex.PeerDown:
				return
			case lamportmutex.Release:
				fin(ep.ID(), m.From)
				return
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
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
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
					m := lamportmutex.Message{Kind: lamportmutex.Request, From: ep.ID(), To: to,
						Payload: streamPayload(uint32(inc), seq)}
					err := ep.Send(m)
					for errors.Is(err, lamportmutex.ErrQueueFull) { // wait for room, then retry
						fulls.Add(1)
						if err = ep.Flush(ctx); err == nil {
							err = ep.Send(m)
						}
					}
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
		flush(t, ep) // room for the fins
		for _, to := range ids {
			if to != from {
				send(t, ep, lamportmutex.Release, to, 0)
			}
		}
	}
	<-finAll
	closeNet(t, n)
	wg.Wait()
	t.Logf("%d Sends refused with a full queue, then retried", fulls.Load())
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
	defer closeNet(t, n)
	a, b := endpoint(t, n, "a"), endpoint(t, n, "b")
	sb := startSink(t, b)
	const count = 200
	for i := range count {
		send(t, a, lamportmutex.Request, "b", uint64(i))
	}
	sb.expectPeerUps(t, "a")
	for i := range count {
		sb.expect(t, lamportmutex.Request, "a", uint64(i))
	}
}

func TestChanSeededDelayIsRepeatable(t *testing.T) {
	draws := func(seed int64) []time.Duration {
		n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{Seed: seed, MaxDelay: time.Second})
		defer closeNet(t, n)
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
