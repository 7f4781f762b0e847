package transport

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// flowsBothWays checks that x and y exchange a message each way with the
// given clock, skipping what an earlier incarnation left unacknowledged
// (lower clocks).
func flowsBothWays(t *testing.T, c *tcpCluster, x, y string, clock uint64) {
	t.Helper()
	for _, pair := range [][2]string{{x, y}, {y, x}} {
		tcpSend(t, c.nodes[pair[0]], pair[1], clock, nil)
		for {
			m := tcpRecvData(t, c.nodes[pair[1]])
			if m.From == pair[0] && m.Clock == clock {
				break
			}
			if m.Clock >= clock {
				t.Fatalf("%s got %v, want clock %d from %s", pair[1], m, clock, pair[0])
			}
		}
	}
}

// TestTCPPlaintextForgedIncarnationDoesNotLockOut: without TLS, a hello
// claiming member 1 (the dialer of the pair) with an incarnation 23 hours
// ahead, sent to 2 while 1 is down, does not lock the real 1 out: its lower
// incarnation is accepted as a restart, PeerUp first, and messages flow
// both ways.
func TestTCPPlaintextForgedIncarnationDoesNotLockOut(t *testing.T) {
	c, two, forged := forgeWhileDown(t)

	realOneComesBack(t, c, two, forged)
}

// TestTCPPlaintextForgedWelcomeDoesNotLockOut: the dialer side of the same
// rule: a process at 2's address answering with an incarnation 23 hours
// ahead does not make the real 2's lower incarnation stale.
func TestTCPPlaintextForgedWelcomeDoesNotLockOut(t *testing.T) {
	tcpLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	forged := uint64(time.Now().Add(23 * time.Hour).UnixNano())
	done := make(chan struct{})
	go func() { // the impostor at 2's address
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br, bw := bufio.NewReader(conn), bufio.NewWriter(conn)
			check := helloCheck{version: protocolVersion, self: "2", cluster: "test-cluster", known: func(string) bool { return true }}
			if _, _, err := readHello(br, check); err == nil {
				_ = writeWelcome(bw, protocolVersion, welcome{From: "2", Incarnation: forged})
			}
			conn.Close()
		}
	}()
	var once sync.Once
	stopImpostor := func() { once.Do(func() { ln.Close(); <-done }) }
	defer stopImpostor()
	c := newTCPCluster(t, []string{"1"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"1": cfg.Peers["1"], "2": addr}
	})
	one := c.nodes["1"]
	out := &one.peers["2"].out
	tcpEventually(t, func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.remoteInc == forged
	}, "1 to adopt the forged welcome")
	stopImpostor()

	c.addrs["2"] = addr
	two := c.start("2", nil, 0)
	tcpEventually(t, func() bool {
		st := peerStatus(one, "2")
		return st.Connected && st.Inbound && st.Incarnation == two.Incarnation()
	}, "1 to connect to the real 2: %+v", peerStatus(one, "2"))
	flowsBothWays(t, c, "1", "2", 7)
}

// TestTCPPlaintextQuarantinedForgeryDoesNotLockOut: without TLS, an
// impostor's hello for member 1 with an incarnation 23 hours ahead, sent
// to 2 while 1 is down, is accepted and then quarantined; the real 1, with
// a lower incarnation, is still accepted as a restart, PeerUp first, and
// messages flow both ways.
func TestTCPPlaintextQuarantinedForgeryDoesNotLockOut(t *testing.T) {
	c, two, forged := forgeWhileDown(t)
	two.Quarantine("1", forged, errors.New("bad input from the impostor"))
	_, wl, err := rawHello(t, c.addrs["2"], nil, protocolVersion, hello{From: "1", To: "2", Cluster: "test-cluster", Incarnation: forged})
	if err == nil && wl.Refusal == "" {
		t.Fatalf("the quarantined incarnation was accepted again: %+v", wl)
	}

	realOneComesBack(t, c, two, forged)
}

// realOneComesBack starts the real "1", whose incarnation is below forged,
// and checks that "2" (two) takes it as a restart: PeerUps both ways (any
// PeerUp of the forged incarnation before it is skipped), messages both
// ways, and 2's status naming the real incarnation.
func realOneComesBack(t *testing.T, c *tcpCluster, two *TCP, forged uint64) {
	t.Helper()
	one := c.start("1", nil, 0)
	if one.Incarnation() >= forged {
		t.Fatalf("the real incarnation %d is not below the forged %d", one.Incarnation(), forged)
	}
	for {
		m := tcpRecv(t, two)
		if m.Kind != lamportmutex.PeerUp {
			t.Fatalf("2 got %v before the real 1's PeerUp", m)
		}
		if m.From == "1" && m.Incarnation == one.Incarnation() {
			break
		}
		if m.From != "1" || m.Incarnation != forged {
			t.Fatalf("2 got %v, want PeerUp of 1's incarnation %d", m, one.Incarnation())
		}
	}
	if m := tcpRecv(t, one); m.Kind != lamportmutex.PeerUp || m.From != "2" || m.Incarnation != two.Incarnation() {
		t.Fatalf("the real 1 got %v, want PeerUp of 2", m)
	}
	flowsBothWays(t, c, "2", "1", 7)
	if st := peerStatus(two, "1"); st.Incarnation != one.Incarnation() || !st.Inbound || !st.Connected {
		t.Fatalf("2's status of 1: %+v, want the real incarnation %d", st, one.Incarnation())
	}
}

// forgeWhileDown starts members 1 and 2 without TLS, stops 1, and has an
// impostor's hello for 1, with an incarnation 23 hours ahead, accepted by
// 2. It returns the cluster, 2, and the forged incarnation.
func forgeWhileDown(t *testing.T) (*tcpCluster, *TCP, uint64) {
	t.Helper()
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"1", "2"}, nil)
	two := c.nodes["2"]
	checkAlive(t, c, "1", "2", 1)
	if err := closeTCP(c.nodes["1"]); err != nil {
		t.Fatal(err)
	}
	tcpEventually(t, func() bool { return !peerStatus(two, "1").Inbound }, "2 to see 1's stream end")
	forged := uint64(time.Now().Add(23 * time.Hour).UnixNano())
	_, wl, err := rawHello(t, c.addrs["2"], nil, protocolVersion, hello{From: "1", To: "2", Cluster: "test-cluster", Incarnation: forged})
	if err != nil || wl.Refusal != "" {
		t.Fatalf("the forged hello was not accepted (the test needs it to be): %+v, %v", wl, err)
	}
	tcpEventually(t, func() bool { return peerStatus(two, "1").Incarnation == forged }, "2 to store the forged incarnation")
	return c, two, forged
}
