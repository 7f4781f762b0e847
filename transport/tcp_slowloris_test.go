package transport

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// TestTCPSlowlorisCannotKeepPeerOut: with the handshake cap full of idle
// connections that never time out and are re-opened all along, a
// restarted peer still completes its handshake and messages flow both
// ways, with and without TLS.
func TestTCPSlowlorisCannotKeepPeerOut(t *testing.T) {
	tcpLeakCheck(t)
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			var certs map[string]tls.Certificate
			var ca *testCA
			if mode == "tls" {
				ca = newTestCA(t, "ledger CA")
				certs = map[string]tls.Certificate{"a": ca.issueEd25519(t, "a", "a"), "b": ca.issueEd25519(t, "b", "b")}
			}
			c := newTCPCluster(t, []string{"a", "b"}, func(cfg *TCPConfig) {
				// Idle connections hold their slot until evicted.
				cfg.HandshakeTimeout = time.Hour
				cfg.preambleTimeout = time.Hour
				if ca != nil {
					cfg.TLS = tlsWith(ca, certs[cfg.ID])
				}
			})
			checkAlive(t, c, "a", "b", 1)
			a := c.nodes["a"]
			if err := closeTCP(c.nodes["b"]); err != nil {
				t.Fatal(err)
			}
			var held []net.Conn
			defer func() {
				for _, conn := range held {
					if conn != nil {
						conn.Close()
					}
				}
			}()
			dial := func() net.Conn {
				conn, err := net.Dial("tcp", c.addrs["a"])
				if err != nil {
					t.Error(err)
					return nil
				}
				return conn
			}
			for range maxPendingHandshakes {
				held = append(held, dial())
			}
			tcpEventually(t, func() bool { return a.pending.len() == maxPendingHandshakes }, "a's handshake cap to fill (%d)", a.pending.len())

			// The attacker keeps opening idle connections while b restarts.
			stop, done := make(chan struct{}), make(chan []net.Conn)
			go func() {
				var more []net.Conn
				defer func() { done <- more }()
				for range 300 {
					select {
					case <-stop:
						return
					default:
					}
					conn := dial()
					if conn == nil {
						return
					}
					more = append(more, conn)
				}
			}()
			stopped := false
			stopFlood := func() {
				if !stopped {
					stopped = true
					close(stop)
					held = append(held, <-done...)
				}
			}
			defer stopFlood()
			restartAndCheck(t, c, "b", "a")
			stopFlood()
			if n := a.pending.len(); n > maxPendingHandshakes {
				t.Errorf("%d pending handshakes, cap %d", n, maxPendingHandshakes)
			}
			checkAlive(t, c, "a", "b", 8)
		})
	}
}

// TestTCPPreambleTimeout: a connection that sends nothing is closed after
// the preamble timeout, long before HandshakeTimeout.
func TestTCPPreambleTimeout(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.HandshakeTimeout = time.Hour
		cfg.preambleTimeout = 10 * time.Millisecond
	})
	conn, err := net.Dial("tcp", c.addrs["a"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c.waitErr("a", ErrProtocol, "refused handshake", "no preamble within 10ms")
	if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
}

// TestPendingSetEvictsFromBusiestAddress: over the cap, the connection
// evicted is the oldest of the address holding the most slots, so an
// address flooding the cap cannot evict another's handshake.
func TestPendingSetEvictsFromBusiestAddress(t *testing.T) {
	var ps pendingSet
	honest := &pending{host: "10.0.0.2"}
	if ps.add(honest) != nil {
		t.Fatal("evicted below the cap")
	}
	var flood []*pending
	for i := range maxPendingHandshakes - 1 {
		pc := &pending{host: "10.0.0.66"}
		flood = append(flood, pc)
		if ps.add(pc) != nil {
			t.Fatalf("evicted at %d, below the cap", i+2)
		}
	}
	for i := range 3 * maxPendingHandshakes {
		pc := &pending{host: "10.0.0.66"}
		victim := ps.add(pc)
		if victim != flood[0] || !victim.evicted {
			t.Fatalf("round %d: evicted %+v, want the flood's oldest", i, victim)
		}
		flood = append(flood[1:], pc)
	}
	if ps.remove(honest) || ps.len() != maxPendingHandshakes-1 {
		t.Fatalf("the honest handshake was evicted, or the set holds %d", ps.len())
	}
	// One address alone: the oldest goes.
	var one pendingSet
	first := &pending{host: "127.0.0.1"}
	one.add(first)
	for range maxPendingHandshakes - 1 {
		one.add(&pending{host: "127.0.0.1"})
	}
	if victim := one.add(&pending{host: "127.0.0.1"}); victim != first || !one.remove(first) {
		t.Fatalf("evicted %p, want the oldest %p", victim, first)
	}
}

// TestTCPJunkClosedCleanly: bytes that are not the protocol (nor TLS) get
// the connection closed, not reset: the acceptor reads what came at once
// before closing.
func TestTCPJunkClosedCleanly(t *testing.T) {
	tcpLeakCheck(t)
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
				if mode == "tls" {
					ca := newTestCA(t, "ledger CA")
					cfg.TLS = tlsWith(ca, ca.issueEd25519(t, "a", "a"))
				}
			})
			conn, err := net.Dial("tcp", c.addrs["a"])
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("LMTX hello, I am client 2\n")); err != nil {
				t.Fatal(err)
			}
			if answer, err := io.ReadAll(conn); err != nil || len(answer) != 0 {
				t.Fatalf("answer %q, %v; want the connection closed without answer", answer, err)
			}
		})
	}
}
