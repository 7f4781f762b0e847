package transport

import (
	"context"
	"crypto/tls"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// countLines counts the log lines that contain every one of subs.
func countLines(l *logBuf, subs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// noWarnings fails if the log of id has a line at Warn or above.
func noWarnings(t *testing.T, c *tcpCluster, id string) {
	t.Helper()
	for _, line := range strings.Split(c.logs[id].String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("%s logged a fault: %s", id, line)
		}
	}
}

// TestTCPGoodbye: a peer that flushes and closes says goodbye on its
// connection to each peer, the one it dialed (to c) and the one it
// accepted (from a). They log its departure once, at Info, and nothing at
// Warn; their Status says it left; and when it comes back as a
// new incarnation it comes up with PeerUp first and messages flow again.
func TestTCPGoodbye(t *testing.T) {
	t.Run("plaintext", func(t *testing.T) { testGoodbye(t, nil) })
	t.Run("TLS", func(t *testing.T) {
		ca := newTestCA(t, "goodbye CA")
		configs := map[string]*tls.Config{}
		for _, id := range []string{"a", "b", "c"} {
			configs[id] = tlsWith(ca, ca.issue(t, id))
		}
		testGoodbye(t, func(cfg *TCPConfig) { cfg.TLS = configs[cfg.ID] })
	})
}

func testGoodbye(t *testing.T, mod func(*TCPConfig)) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "b", "c"}, mod)
	checkAlive(t, c, "a", "b", 1)
	checkAlive(t, c, "c", "b", 1)
	b := c.nodes["b"]
	inc := b.Incarnation()
	tcpSend(t, b, "a", 2, []byte("last words"))
	ctx, cancel := context.WithTimeout(context.Background(), tcpPatience)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := closeTCP(b); err != nil {
		t.Fatal(err)
	}
	if m := tcpRecvData(t, c.nodes["a"]); m.From != "b" || m.Clock != 2 {
		t.Fatalf("a got %v, want b's last message", m)
	}
	for _, id := range []string{"a", "c"} {
		tr := c.nodes[id]
		waitLog(t, c.logs[id], "level=INFO", "peer left", "peer=b", "incarnation="+itoa(inc))
		tcpEventually(t, func() bool {
			st := peerStatus(tr, "b")
			return st.Left && !st.Connected && !st.Inbound
		}, "%s to see b gone: %+v", id, peerStatus(tr, "b"))
		// The connection ended with a goodbye: one line at Info, and no
		// connection error at all.
		if n := countLines(c.logs[id], "level=INFO", "peer left"); n != 1 {
			t.Errorf("%s: %d Info lines about b leaving, want 1:\n%s", id, n, c.logs[id])
		}
		if err := c.errs[id].find(nil, `"b"`); err != nil && !strings.Contains(err.Error(), "cannot dial") {
			t.Errorf("%s reported a connection error: %v", id, err)
		}
	}
	noWarnings(t, c, "b")

	c.start("b", nil, inc+1) // same address, new incarnation
	for _, id := range []string{"a", "c"} {
		m := tcpRecv(t, c.nodes[id])
		for m.Kind == lamportmutex.PeerUp && m.From != "b" { // first contact with the third peer
			m = tcpRecv(t, c.nodes[id])
		}
		if m.Kind != lamportmutex.PeerUp || m.From != "b" || m.Incarnation != inc+1 {
			t.Fatalf("%s got %v, want PeerUp from b's new incarnation", id, m)
		}
		flowsBothWays(t, c, id, "b", 10)
		tcpEventually(t, func() bool {
			st := peerStatus(c.nodes[id], "b")
			return !st.Left && st.Connected && st.Inbound
		}, "%s to see b back: %+v", id, peerStatus(c.nodes[id], "b"))
		waitLog(t, c.logs[id], "level=INFO", "peer restarted", "peer=b", "incarnation="+itoa(inc+1))
	}
	waitLog(t, c.logs["a"], "level=INFO", "stream up", "peer=b", "dir=out", "resumed=false")
	waitLog(t, c.logs["c"], "level=INFO", "stream up", "peer=b", "dir=in", "resumed=false")
	for _, id := range []string{"a", "b", "c"} {
		noWarnings(t, c, id)
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestTCPGoodbyeIsOnlyAClaim: a GOODBYE changes none of the state the
// protocol relies on. A dialer that says goodbye and reconnects with the
// same incarnation resumes after what was delivered: its replays are
// dropped, nothing is lost, and no PeerUp comes in between. A new
// incarnation after a goodbye still comes up with PeerUp first.
func TestTCPGoodbyeIsOnlyAClaim(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = maps.Clone(cfg.Peers)
		cfg.Peers["M"] = "127.0.0.1:1" // M exists only as the raw dialer below
	})
	a := c.nodes["a"]
	msg := func(clock uint64) []byte {
		return mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "M", To: "a", Clock: clock})
	}
	bye := func(r *rawPeer) {
		t.Helper()
		r.bw.Write(goodbyeFrame)
		if err := r.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		r.waitClosed(t) // a closes a stream that said goodbye
	}
	h := hello{From: "M", To: "a", Cluster: "test-cluster", Incarnation: 5}
	r := rawDial(t, c.addrs["a"])
	r.handshake(t, h)
	r.data(t, 1, msg(1))
	r.data(t, 2, msg(2))
	bye(r)
	if m := tcpRecv(t, a); m.Kind != lamportmutex.PeerUp || m.From != "M" || m.Incarnation != 5 {
		t.Fatalf("got %v, want PeerUp from m", m)
	}
	for want := uint64(1); want <= 2; want++ {
		if m := tcpRecvData(t, a); m.Clock != want {
			t.Fatalf("got %v, want clock %d", m, want)
		}
	}
	waitLog(t, c.logs["a"], "level=INFO", "peer left", "peer=M", "dir=in", "incarnation=5")
	tcpEventually(t, func() bool { return peerStatus(a, "M").Left }, "m marked as left")

	r = rawDial(t, c.addrs["a"])
	if wl := r.handshake(t, h); wl.Resume != 2 {
		t.Fatalf("after a goodbye the same incarnation resumes after %d, want 2", wl.Resume)
	}
	tcpEventually(t, func() bool { return !peerStatus(a, "M").Left }, "m no longer marked as left after a handshake")
	r.data(t, 1, msg(1)) // replays: dropped
	r.data(t, 2, msg(2))
	r.data(t, 3, msg(3))
	if m := tcpRecv(t, a); m.Kind != lamportmutex.Request || m.Clock != 3 {
		t.Fatalf("got %v, want clock 3 (no PeerUp, no replay)", m)
	}
	bye(r)

	r = rawDial(t, c.addrs["a"])
	h.Incarnation = 6
	if wl := r.handshake(t, h); wl.Resume != 0 {
		t.Fatalf("a new incarnation resumes after %d, want 0", wl.Resume)
	}
	r.data(t, 1, msg(7))
	if m := tcpRecv(t, a); m.Kind != lamportmutex.PeerUp || m.Incarnation != 6 {
		t.Fatalf("got %v, want PeerUp from m's incarnation 6", m)
	}
	if m := tcpRecvData(t, a); m.Clock != 7 {
		t.Fatalf("got %v, want clock 7", m)
	}
	noWarnings(t, c, "a")
}

// TestTCPCloseSaysGoodbyeLast: as an acceptor, Close acknowledges what it
// delivered and then sends GOODBYE, the last frame on the connection; it
// does not close the connection under the dialer, which closes it.
func TestTCPCloseSaysGoodbyeLast(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = maps.Clone(cfg.Peers)
		cfg.Peers["M"] = "127.0.0.1:1"
	})
	a := c.nodes["a"]
	r := rawDial(t, c.addrs["a"])
	r.handshake(t, hello{From: "M", To: "a", Cluster: "test-cluster", Incarnation: 1})
	r.data(t, 1, mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "M", To: "a", Clock: 1}))
	tcpRecv(t, a) // PeerUp
	tcpRecvData(t, a)
	tcpEventually(t, func() bool { return peerStatus(a, "M").MsgsReceived == 1 }, "the delivery to be counted")
	closed := make(chan error, 1)
	go func() { closed <- closeTCP(a) }()
	var acked uint64
	for {
		body, err := readFrame(r.br, seqFrameSize, nil)
		if err != nil {
			t.Fatalf("reading a's frames: %v", err)
		}
		typ, seq, _, err := parseStreamFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if typ == frameGoodbye {
			break
		}
		acked = seq
	}
	if acked != 1 {
		t.Errorf("last ACK before GOODBYE acknowledged %d, want 1", acked)
	}
	r.conn.Close()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	noWarnings(t, c, "a")
}

// TestTCPSilentConnection: a connection closed before its first byte (a
// port scan, a peer that gave up dialing) is logged at Debug; one that
// sent part of a preamble is a fault, logged at Warn.
func TestTCPSilentConnection(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, nil)
	conn, err := net.Dial("tcp", c.addrs["a"])
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitLog(t, c.logs["a"], "level=DEBUG", "connection closed", "closed before sending anything")
	noWarnings(t, c, "a")

	conn, err = net.Dial("tcp", c.addrs["a"])
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("LL"))
	conn.Close()
	waitLog(t, c.logs["a"], "level=WARN", "refused handshake", "EOF")
}

// TestTCPRestartedPeerDialedAtOnce: when a peer (the higher id) comes back
// as a new incarnation and kicks, we dial it at once, whatever our backoff. The
// backoff here is an hour, so without that the stream to it could not come
// back within the test's patience. The peer goes away cleanly (goodbye) or
// by a crash (its connections cut, no goodbye).
func TestTCPRestartedPeerDialedAtOnce(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "goodbye", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			tcpLeakCheck(t)
			c := newTCPCluster(t, []string{"a", "b"}, func(cfg *TCPConfig) {
				cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour
			})
			a, b := c.nodes["a"], c.nodes["b"]
			checkAlive(t, c, "a", "b", 1)
			inc := b.Incarnation()
			if crash {
				// No new connection either: a kick b sent at start may
				// still be on its way, and would have a redial at once.
				_ = b.ln.Close()
				cutAll(b)
			}
			if err := closeTCP(b); err != nil {
				t.Fatal(err)
			}
			tcpEventually(t, func() bool {
				st := peerStatus(a, "b")
				return !st.Connected && !st.Inbound
			}, "a to see b gone: %+v", peerStatus(a, "b"))
			if left := peerStatus(a, "b").Left; left == crash {
				t.Errorf("b left: %v, want %v; log:\n%s", left, !crash, c.logs["a"])
			}
			tcpSend(t, a, "b", 2, []byte("while down"))

			b = c.start("b", nil, inc+1)
			for {
				m := tcpRecv(t, b)
				if m.From == "a" && m.Clock == 2 {
					break // a's stream to the new b is up
				}
			}
			flowsBothWays(t, c, "a", "b", 3)
		})
	}
}

// cutAll closes every connection of tr, as a crash would: no goodbye.
func cutAll(tr *TCP) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for conn := range tr.conns {
		conn.Close()
	}
}

// TestTCPPeerHangingUp: a peer that closes the connection before answering
// our hello (it is going away) is logged like one that cannot be reached,
// at Info and not as a fault; one that answers with part of a welcome is a
// fault. A dialer that hangs up during the TLS handshake, as a closing
// peer does, is logged at Debug.
func TestTCPPeerHangingUp(t *testing.T) {
	tcpLeakCheck(t)
	for _, tc := range []struct {
		name  string
		reply []byte
		level string
	}{
		{"nothing", nil, "level=INFO"},
		{"part of a welcome", []byte("LL"), "level=WARN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { // x: reads the hello, then hangs up
				defer close(done)
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					buf := make([]byte, 512)
					conn.Read(buf)
					conn.Write(tc.reply)
					conn.Close()
				}
			}()
			defer func() { ln.Close(); <-done }()
			c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
				cfg.Peers = maps.Clone(cfg.Peers)
				cfg.Peers["x"] = ln.Addr().String()
			})
			a := c.nodes["a"]
			waitLog(t, c.logs["a"], tc.level, "peer=x")
			closeTCP(a)
			if tc.level == "level=INFO" {
				noWarnings(t, c, "a")
				waitLog(t, c.logs["a"], "level=INFO", "cannot reach peer", "peer=x", "without answering")
			}
		})
	}

	t.Run("TLS dialer", func(t *testing.T) {
		ca := newTestCA(t, "hang-up CA")
		c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) { cfg.TLS = tlsWith(ca, ca.issue(t, cfg.ID)) })
		raw, err := net.Dial("tcp", c.addrs["a"])
		if err != nil {
			t.Fatal(err)
		}
		cfg := tlsWith(ca, ca.issue(t, "a"))
		cfg.ServerName = "a"
		_ = tls.Client(closeAfterWrite{raw}, cfg).Handshake() // sends its hello, then hangs up
		waitLog(t, c.logs["a"], "level=DEBUG", "TLS handshake", "the dialer hung up")
		noWarnings(t, c, "a")
	})
}

// closeAfterWrite closes its connection after the first write.
type closeAfterWrite struct{ net.Conn }

func (c closeAfterWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}

// TestTCPGoodbyeAcknowledgesDeliveryUnderWay: a message whose deliver call
// is under way when its receiver closes is acknowledged before the
// GOODBYE, so the sender does not keep it for the receiver's next
// incarnation, which would get it a second time. The deliver returns once
// Close has begun, racing the writer's goodbye; a few rounds make a
// goodbye that does not wait for it lose the race at least once.
func TestTCPGoodbyeAcknowledgesDeliveryUnderWay(t *testing.T) {
	tcpLeakCheck(t)
	for round := range 8 {
		var closing atomic.Pointer[TCP]
		entered := make(chan struct{})
		c := newTCPClusterDeliver(t, []string{"a", "b"}, nil, func(id string) func(lamportmutex.Message) {
			return func(m lamportmutex.Message) {
				if id == "b" && m.Kind == lamportmutex.Request {
					close(entered)
					<-closing.Load().done // returns once b's Close began
				}
			}
		})
		a, b := c.nodes["a"], c.nodes["b"]
		closing.Store(b)
		if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: 1}); err != nil {
			t.Fatal(err)
		}
		<-entered
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		o := &a.peers["b"].out
		tcpEventually(t, func() bool { return !o.isConnected() }, "a's stream with b to end")
		o.mu.Lock()
		held := len(o.q)
		o.mu.Unlock()
		if held != 0 {
			t.Fatalf("round %d: a holds %d messages for b that b delivered before it said goodbye", round, held)
		}
		c.closeAll()
	}
}
