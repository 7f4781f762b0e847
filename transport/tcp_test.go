package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

var _ lamportmutex.Transport = (*TCP)(nil)

func TestTCPExchange(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "c"}
	c := newTCPCluster(t, ids, nil)
	const n = 50
	for _, from := range ids {
		for _, to := range ids {
			if from != to {
				for i := uint64(1); i <= n; i++ {
					tcpSend(t, c.nodes[from], to, i, []byte(fmt.Sprintf("%s>%s#%d", from, to, i)))
				}
			}
		}
	}
	for _, to := range ids {
		tr := c.nodes[to]
		var got []lamportmutex.Message // kept, to catch payloads aliasing a reused buffer
		next := map[string]uint64{}
		for len(got) < 2*n+2 {
			m := tcpRecv(t, tr)
			got = append(got, m)
			if m.To != to {
				t.Fatalf("%s received %v", to, m)
			}
			if m.Kind == lamportmutex.PeerUp {
				if next[m.From] != 0 {
					t.Fatalf("%s: second PeerUp from %s", to, m.From)
				}
				next[m.From] = 1
				continue
			}
			if next[m.From] == 0 {
				t.Fatalf("%s: %v before PeerUp", to, m)
			}
			if m.Clock != next[m.From] {
				t.Fatalf("%s: got %v, want clock %d", to, m, next[m.From])
			}
			next[m.From]++
		}
		for _, m := range got {
			if m.Kind != lamportmutex.PeerUp && string(m.Payload) != fmt.Sprintf("%s>%s#%d", m.From, m.To, m.Clock) {
				t.Errorf("%s: payload of %v corrupted", to, m)
			}
		}
	}
	tcpEventually(t, func() bool {
		for _, id := range ids {
			for _, st := range c.nodes[id].Status() {
				if !st.Connected || !st.Inbound || st.Queued != 0 {
					return false
				}
			}
		}
		return true
	}, "all streams up and drained")
	st := peerStatus(c.nodes["a"], "b")
	if st.Addr != c.addrs["b"] || st.Incarnation != c.nodes["b"].Incarnation() || st.Since.IsZero() ||
		st.MsgsSent != n || st.MsgsReceived != n || st.BytesSent == 0 || st.BytesReceived == 0 || st.Restarts != 0 {
		t.Errorf("status of b at a: %+v", st)
	}
}

// TestTCPExactlyOnceUnderKills has three peers exchange 102,000 messages
// while connections are killed at random moments: every message must
// arrive exactly once and in order.
func TestTCPExactlyOnceUnderKills(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "c"}
	perPair := uint64(17000)
	if testing.Short() {
		perPair = 2000
	}
	c := newTCPCluster(t, ids, func(cfg *TCPConfig) { cfg.QueueBytes = 8 << 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*tcpPatience)
	defer cancel()
	payload := func(from, to string, seq uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, seq)
		return append(append(b, from...), to...)
	}
	var kills atomic.Int64
	var wg sync.WaitGroup
	for _, from := range ids {
		for _, to := range ids {
			if from == to {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := c.nodes[from]
				for i := uint64(1); i <= perPair; i++ {
					m := lamportmutex.Message{Kind: lamportmutex.Request, From: from, To: to, Clock: i, Payload: payload(from, to, i)}
					if err := sendWait(ctx, tr, m); err != nil {
						t.Errorf("send %v: %v", m, err)
						return
					}
				}
			}()
		}
	}
	for k, to := range ids {
		in := tcpInboxCh(t, c.nodes[to])
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(k), 42))
			next := map[string]uint64{}
			remaining := 2 * perPair
			untilKill := rng.IntN(2000)
			for remaining > 0 {
				var m lamportmutex.Message
				select {
				case m = <-in:
				case <-ctx.Done():
					t.Errorf("%s: still waiting for %d messages", to, remaining)
					return
				}
				if m.Kind == lamportmutex.PeerUp {
					if next[m.From] != 0 {
						t.Errorf("%s: PeerUp from %s again, without a restart", to, m.From)
						return
					}
					next[m.From] = 1
					continue
				}
				if next[m.From] == 0 || m.Clock != next[m.From] || m.To != to || string(m.Payload) != string(payload(m.From, to, m.Clock)) {
					t.Errorf("%s: got %v, want clock %d from %s", to, m, next[m.From], m.From)
					return
				}
				next[m.From]++
				remaining--
				if untilKill--; untilKill <= 0 {
					untilKill = rng.IntN(2000)
					if c.nodes[ids[rng.IntN(len(ids))]].killConn(rng) {
						kills.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// A reader counts a message just after handing it over, so the last
	// counts may trail what the receivers saw; they must settle on perPair
	// and never pass it.
	tcpEventually(t, func() bool {
		for _, id := range ids {
			for _, st := range c.nodes[id].Status() {
				if st.MsgsReceived > perPair {
					t.Fatalf("%s from %s: %d delivered, want %d", id, st.ID, st.MsgsReceived, perPair)
				}
				if st.MsgsReceived != perPair {
					return false
				}
			}
		}
		return true
	}, "every stream to count %d deliveries", perPair)
	var reconnects uint64
	for _, id := range ids {
		for _, st := range c.nodes[id].Status() {
			reconnects += st.Reconnects
		}
	}
	if kills.Load() == 0 || reconnects == 0 {
		t.Errorf("no faults injected: %d kills, %d reconnects", kills.Load(), reconnects)
	}
	t.Logf("%d messages, %d connections killed, %d reconnects", 6*perPair, kills.Load(), reconnects)
}

func TestTCPRestartedPeer(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "c"}
	c := newTCPCluster(t, ids, nil)
	a, b := c.nodes["a"], c.nodes["b"]
	expectPeerUp := func(tr *TCP, from ...string) {
		t.Helper()
		want := map[string]bool{}
		for _, f := range from {
			want[f] = true
		}
		for len(want) > 0 {
			m := tcpRecv(t, tr)
			if m.Kind != lamportmutex.PeerUp || !want[m.From] {
				t.Fatalf("%s: got %v, want PeerUp from one of %v", tr.ID(), m, want)
			}
			delete(want, m.From)
		}
	}
	expectPeerUp(a, "b", "c")
	expectPeerUp(b, "a", "c")
	expectPeerUp(c.nodes["c"], "a", "b")
	for i := uint64(1); i <= 3; i++ {
		tcpSend(t, b, "a", i, []byte("old"))
	}
	for i := uint64(1); i <= 3; i++ {
		if m := tcpRecv(t, a); m.Clock != i || string(m.Payload) != "old" {
			t.Fatalf("a got %v", m)
		}
	}
	oldInc := b.Incarnation()
	if err := closeTCP(b); err != nil {
		t.Fatal(err)
	}
	tcpSend(t, a, "b", 100, []byte("while down"))
	b = c.start("b", nil, oldInc+1) // same address, new incarnation
	expectPeerUp(a, "b")
	expectPeerUp(c.nodes["c"], "b")
	tcpSend(t, b, "a", 1, []byte("new"))
	if m := tcpRecv(t, a); m.From != "b" || m.Clock != 1 || string(m.Payload) != "new" {
		t.Fatalf("a got %v, want the new incarnation's first message", m)
	}
	tcpSend(t, a, "b", 101, nil)
	// The new b hears PeerUp from a and c. The message a sent while b was
	// down may go to the new incarnation (after PeerUp from a) or be
	// dropped; either way 101 arrives last from a.
	up := map[string]bool{}
	for !up["c"] || !up["101"] {
		m := tcpRecv(t, b)
		switch {
		case m.Kind == lamportmutex.PeerUp && !up[m.From]:
			up[m.From] = true
		case m.From == "a" && up["a"] && m.Clock == 100 && !up["100"]:
			up["100"] = true
		case m.From == "a" && up["a"] && m.Clock == 101:
			up["101"], up["100"] = true, true
		default:
			t.Fatalf("b got %v; so far %v", m, up)
		}
	}
	for _, id := range []string{"a", "c"} {
		tcpEventually(t, func() bool {
			st := peerStatus(c.nodes[id], "b")
			return st.Incarnation == oldInc+1 && st.Restarts == 1 && st.Connected && st.Inbound
		}, "status of restarted b at %s: %+v", id, peerStatus(c.nodes[id], "b"))
	}
}

func TestTCPSendErrors(t *testing.T) {
	tcpLeakCheck(t)
	// b's address is reserved by a listener that never answers usefully:
	// only a runs, so messages to b stay queued.
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:1"}
		cfg.QueueBytes = 64 // two small messages
		cfg.MaxFrameSize = 100
	})
	a := c.nodes["a"]
	msg := func(from, to string, k lamportmutex.Kind, p []byte) lamportmutex.Message {
		return lamportmutex.Message{Kind: k, From: from, To: to, Clock: 1, Payload: p}
	}
	for _, tc := range []struct {
		m    lamportmutex.Message
		want error
	}{
		{msg("b", "b", lamportmutex.Request, nil), ErrWrongSender},
		{msg("a", "zz", lamportmutex.Request, nil), ErrUnknownPeer},
		{msg("a", "a", lamportmutex.Request, nil), ErrUnknownPeer},
		{msg("a", "b", lamportmutex.PeerUp, nil), ErrUnsendable},
		{msg("a", "b", lamportmutex.PeerDown, nil), ErrUnsendable},
		{msg("a", "b", 0, nil), ErrUnsendable},
		{msg("a", "b", lamportmutex.Release, make([]byte, a.MaxPayload()+1)), ErrFrameTooLarge},
	} {
		if err := a.Send(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("Send(%v) = %v, want %v", tc.m, err, tc.want)
		}
	}
	for range 2 {
		if err := a.Send(msg("a", "b", lamportmutex.Request, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(msg("a", "b", lamportmutex.Request, nil)); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Errorf("Send with a full queue = %v, want ErrQueueFull", err)
	}
	if st := peerStatus(a, "b"); st.Queued != 2 || st.Connected {
		t.Errorf("status of unreachable b: %+v", st)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Flush(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Flush with b down and a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := a.Close(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close with b down and a cancelled ctx = %v, want context.Canceled", err)
	}
	if err := a.Send(msg("a", "b", lamportmutex.Request, nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	if err := a.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
	if err := a.Start(func(lamportmutex.Message) {}); err == nil {
		t.Error("Start after Close succeeded")
	}
	if err := a.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestNewTCPRejectsBadConfig(t *testing.T) {
	for _, cfg := range []TCPConfig{
		{},
		{ID: "a", ListenAddr: "127.0.0.1:0", Peers: map[string]string{"b": ""}},
		{ID: "a", ListenAddr: "127.0.0.1:0", HeartbeatInterval: 2, IdleTimeout: 1},
		{ID: "a", ListenAddr: "256.0.0.1:0"},
	} {
		if tr, err := NewTCP(cfg); err == nil {
			closeTCP(tr)
			t.Errorf("NewTCP(%+v) succeeded", cfg)
		}
	}
}

// TestTCPCloseUnderLoad closes transports while messages stream both ways
// and connections are being killed: Close must stop everything, and no
// deliver call runs after Close returned.
func TestTCPCloseUnderLoad(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "c"}
	var received atomic.Int64
	closed := map[string]*atomic.Bool{}
	for _, id := range ids {
		closed[id] = &atomic.Bool{}
	}
	c := newTCPClusterDeliver(t, ids, func(cfg *TCPConfig) { cfg.QueueBytes = 4 << 10 }, func(id string) func(lamportmutex.Message) {
		return func(lamportmutex.Message) {
			if closed[id].Load() {
				t.Errorf("%s: deliver called after Close returned", id)
			}
			received.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, from := range ids {
		for _, to := range ids {
			if from != to {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := uint64(1); ; i++ {
						m := lamportmutex.Message{Kind: lamportmutex.Reply, From: from, To: to, Clock: i}
						if err := sendWait(ctx, c.nodes[from], m); err != nil {
							return
						}
					}
				}()
			}
		}
	}
	tcpEventually(t, func() bool { return received.Load() > 3000 }, "traffic")
	c.nodes["b"].killConn(rand.New(rand.NewPCG(1, 2)))
	for _, id := range ids {
		if err := closeTCP(c.nodes[id]); err != nil {
			t.Error(err)
		}
		closed[id].Store(true)
	}
	wg.Wait()
}

// sendWait sends m, waiting with Flush while the peer's queue is full.
func sendWait(ctx context.Context, tr *TCP, m lamportmutex.Message) error {
	for {
		err := tr.Send(m)
		if !errors.Is(err, lamportmutex.ErrQueueFull) {
			return err
		}
		if err := tr.Flush(ctx); err != nil {
			return err
		}
	}
}

// TestTCPPeerDown: deliver runs one call at a time per peer, in stream
// order, with no lock held that Send takes (a's deliver sends); a peer
// that closes is reported down once after its PeerUp, and its next
// incarnation comes up with PeerUp before its messages.
func TestTCPPeerDown(t *testing.T) {
	tcpLeakCheck(t)
	type rec struct {
		mu     sync.Mutex
		got    []lamportmutex.Message
		inside atomic.Int32
	}
	recs := map[string]*rec{"a": {}, "b": {}}
	var a atomic.Pointer[TCP]
	c := newTCPClusterDeliver(t, []string{"a", "b"}, nil, func(id string) func(lamportmutex.Message) {
		r := recs[id]
		return func(m lamportmutex.Message) {
			if r.inside.Add(1) != 1 {
				t.Errorf("%s: deliver calls overlap", id)
			}
			defer r.inside.Add(-1)
			r.mu.Lock()
			r.got = append(r.got, m)
			r.mu.Unlock()
			if id == "a" && m.Kind == lamportmutex.Request {
				if err := a.Load().Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: m.From, Clock: m.Clock}); err != nil {
					t.Errorf("Send from deliver: %v", err)
				}
			}
		}
	})
	a.Store(c.nodes["a"])
	kinds := func(id, from string) []string {
		r := recs[id]
		r.mu.Lock()
		defer r.mu.Unlock()
		var out []string
		for _, m := range r.got {
			if m.From == from {
				out = append(out, fmt.Sprintf("%v@%d", m.Kind, m.Clock))
			}
		}
		return out
	}
	b := c.nodes["b"]
	if err := b.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "b", To: "a", Clock: 1}); err != nil {
		t.Fatal(err)
	}
	tcpEventually(t, func() bool { return len(kinds("b", "a")) == 2 }, "b to get a's PeerUp and reply: %v", kinds("b", "a"))
	ctx, cancel := context.WithTimeout(context.Background(), tcpPatience)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"PEERUP@0", "REQUEST@1", "PEERDOWN@0"}
	tcpEventually(t, func() bool { return len(kinds("a", "b")) >= 3 }, "a to see b go down: %v", kinds("a", "b"))
	if got := kinds("a", "b"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a got from b %v, want %v", got, want)
	}
	b = c.start("b", nil, b.Incarnation()+1)
	if err := b.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "b", To: "a", Clock: 2}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "PEERUP@0", "REQUEST@2")
	tcpEventually(t, func() bool { return len(kinds("a", "b")) >= 5 }, "a to see b's next incarnation: %v", kinds("a", "b"))
	if got := kinds("a", "b"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("a got from b %v, want %v", got, want)
	}
	if err := a.Load().Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTCPFlush: Flush waits for what was sent to a peer that is not up yet
// until it is up and has delivered it, and stops waiting for an
// incarnation that is quarantined.
func TestTCPFlush(t *testing.T) {
	tcpLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // b's address, b not yet running
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	delivered := make(chan lamportmutex.Message, 16)
	c := newTCPClusterDeliver(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"a": cfg.Peers["a"], "b": ln.Addr().String()}
	}, nil)
	a := c.nodes["a"]
	tcpSend(t, a, "b", 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), tcpPatience)
	defer cancel()
	flushed := make(chan error, 1)
	go func() { flushed <- a.Flush(ctx) }()
	bcfg := c.config("b", ln, 0)
	bcfg.Peers = map[string]string{"a": c.addrs["a"], "b": ln.Addr().String()}
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v before b was up", err)
	default:
	}
	b, err := NewTCP(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeTCP(b)
	defer releaseOnce.Do(func() { close(release) }) // before b closes: its deliver may wait for it
	if err := b.Start(func(m lamportmutex.Message) {
		delivered <- m
		if m.Kind == lamportmutex.Reply && m.Clock == 2 {
			<-release // b's application stalls: nothing more is acknowledged
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after b came up: %v", err)
	}
	for _, want := range []lamportmutex.Kind{lamportmutex.PeerUp, lamportmutex.Reply} {
		if m := <-delivered; m.Kind != want {
			t.Fatalf("b got %v, want %v", m, want)
		}
	}
	tcpSend(t, a, "b", 2, nil)
	go func() { flushed <- a.Flush(ctx) }()
	if m := <-delivered; m.Clock != 2 {
		t.Fatalf("b got %v, want clock 2", m)
	}
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v while b's deliver had not returned", err)
	default:
	}
	a.Quarantine("b", b.Incarnation(), errors.New("test"))
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after quarantining b: %v", err)
	}
	releaseOnce.Do(func() { close(release) })
}

// TestTCPReconnectWaitsForDelivery: when a connection breaks while its
// reader is inside deliver, the next connection's reader delivers nothing
// until that call returned and the old stream's PeerDown was delivered.
func TestTCPReconnectWaitsForDelivery(t *testing.T) {
	tcpLeakCheck(t)
	var mu sync.Mutex
	var got []string
	var inside atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	c := newTCPClusterDeliver(t, []string{"a", "b"}, nil, func(id string) func(lamportmutex.Message) {
		return func(m lamportmutex.Message) {
			if id != "b" {
				return
			}
			if inside.Add(1) != 1 {
				t.Errorf("b: deliver calls for a overlap (%v)", m)
			}
			defer inside.Add(-1)
			mu.Lock()
			got = append(got, fmt.Sprintf("%v@%d", m.Kind, m.Clock))
			mu.Unlock()
			if m.Kind == lamportmutex.Request && m.Clock == 1 {
				close(entered)
				<-release
			}
		}
	})
	a, b := c.nodes["a"], c.nodes["b"]
	for i := uint64(1); i <= 2; i++ {
		if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: i}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	in := &b.peers["a"].in
	in.mu.Lock()
	old := in.cur
	in.mu.Unlock()
	b.mu.Lock()
	for conn := range b.conns {
		_ = conn.Close()
	}
	b.mu.Unlock()
	// a redials; b's handshake waits for the reader stuck in deliver. Once
	// the old stream is stopped (by that handshake, or by its writer
	// meeting the closed connection) its reader delivers nothing more, not
	// even REQUEST 2 if it was read along with REQUEST 1.
	tcpEventually(t, func() bool { return b.shaking.Load() > 0 && old.stopped() }, "a's next handshake at b")
	close(release)
	want := "[PEERUP@0 REQUEST@1 PEERDOWN@0 REQUEST@2]"
	tcpEventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 4
	}, "b to get a's second request")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != want {
		t.Fatalf("b got %v, want %s", got, want)
	}
}

// TestTCPSendKeepsNoPayload: the caller may reuse the payload's buffer as
// soon as Send returns, even while the peer is down.
func TestTCPSendKeepsNoPayload(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "b"}, nil)
	a, b := c.nodes["a"], c.nodes["b"]
	buf := []byte("first")
	tcpSend(t, a, "b", 1, buf)
	copy(buf, "XXXXX")
	for {
		m := tcpRecv(t, b)
		if m.Kind == lamportmutex.PeerUp {
			continue
		}
		if string(m.Payload) != "first" {
			t.Fatalf("b got payload %q, want %q", m.Payload, "first")
		}
		return
	}
}
