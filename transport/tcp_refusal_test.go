package transport

import (
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// tcpRecvData receives the next message that is not a PeerUp.
func tcpRecvData(t *testing.T, tr *TCP) lamportmutex.Message {
	t.Helper()
	for {
		if m := tcpRecv(t, tr); m.Kind != lamportmutex.PeerUp {
			return m
		}
	}
}

// checkAlive checks that a and b still exchange messages.
func checkAlive(t *testing.T, c *tcpCluster, a, b string, clock uint64) {
	t.Helper()
	tcpSend(t, c.nodes[a], b, clock, nil)
	if m := tcpRecvData(t, c.nodes[b]); m.From != a || m.Clock != clock {
		t.Fatalf("%s got %v, want clock %d from %s", b, m, clock, a)
	}
	tcpSend(t, c.nodes[b], a, clock, nil)
	if m := tcpRecvData(t, c.nodes[a]); m.From != b || m.Clock != clock {
		t.Fatalf("%s got %v, want clock %d from %s", a, m, clock, b)
	}
}

// TestTCPRefusals: a handshake with a bad identity is refused; the acceptor
// reports why, naming the peer and the values, the dialer learns only a
// generic reason, and other peers keep working.
func TestTCPRefusals(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "bad"}
	badly := func(f func(*TCPConfig)) func(*TCPConfig) {
		return func(cfg *TCPConfig) {
			if cfg.ID == "bad" {
				f(cfg)
			}
		}
	}
	t.Run("cluster", func(t *testing.T) {
		c := newTCPCluster(t, ids, badly(func(cfg *TCPConfig) { cfg.Cluster = "other-cluster" }))
		c.waitErr("a", ErrClusterMismatch, `peer "bad" is in cluster "other-cluster", we are in "test-cluster"`)
		c.waitErr("bad", ErrRefused, `refused by "a": "handshake not accepted"`)
		c.waitErr("bad", ErrClusterMismatch, `peer "a" is in cluster "test-cluster", we are in "other-cluster"`)
		c.waitErr("a", ErrRefused, `refused by "bad": "handshake not accepted"`)
		waitLog(t, c.logs["a"], "refused handshake", "peer=bad", "cluster mismatch", "other-cluster")
		waitLog(t, c.logs["bad"], "handshake refused", "peer=a", "handshake not accepted")
		if err := c.errs["bad"].find(ErrRefused, "test-cluster"); err != nil {
			t.Errorf("a refusal told the dialer the cluster: %v", err)
		}
		checkAlive(t, c, "a", "b", 1)
	})
	t.Run("version", func(t *testing.T) {
		other := protocolVersion + 1
		c := newTCPCluster(t, ids, badly(func(cfg *TCPConfig) { cfg.version = other }))
		theirs := fmt.Sprintf(`peer "bad" speaks version %d, we speak %d`, other, protocolVersion)
		ours := fmt.Sprintf(`peer "a" speaks version %d, we speak %d`, protocolVersion, other)
		c.waitErr("a", ErrVersionMismatch, theirs)
		c.waitErr("bad", ErrRefused, `refused by "a": "protocol version mismatch"`)
		c.waitErr("bad", ErrVersionMismatch, ours)
		waitLog(t, c.logs["a"], "refused handshake", "peer=bad", "version mismatch")
		checkAlive(t, c, "a", "b", 1)
	})
	t.Run("unknown sender", func(t *testing.T) {
		c := newTCPCluster(t, ids, badly(func(cfg *TCPConfig) { cfg.ID = "intruder" }))
		c.waitErr("a", ErrUnknownPeer, `unknown peer "intruder"`)
		c.waitErr("bad", ErrRefused, `refused by "a": "handshake not accepted"`)
		// a, dialing bad's address, reaches intruder instead.
		c.waitErr("bad", ErrWrongPeer, `peer "a" dialed "bad", but this is "intruder"`)
		c.waitErr("a", ErrRefused, `refused by "bad": "handshake not accepted"`)
		waitLog(t, c.logs["a"], "refused handshake", "peer=intruder", "unknown peer")
		checkAlive(t, c, "a", "b", 1)
	})
	t.Run("stale incarnation with TLS", func(t *testing.T) {
		ca := newTestCA(t, "ledger CA")
		certs := map[string]tls.Certificate{}
		for _, id := range ids {
			certs[id] = ca.issueEd25519(t, id, id)
		}
		c := newTCPCluster(t, ids, func(cfg *TCPConfig) { cfg.TLS = tlsWith(ca, certs[cfg.ID]) })
		seen := c.nodes["bad"].Incarnation()
		tcpEventually(t, func() bool { st := peerStatus(c.nodes["a"], "bad"); return st.Inbound && st.Connected }, "a and bad connected")
		if err := closeTCP(c.nodes["bad"]); err != nil {
			t.Fatal(err)
		}
		c.start("bad", nil, 1)
		c.waitErr("a", ErrStaleIncarnation, `peer "bad" presented incarnation 1, already seen`)
		c.waitErr("bad", ErrRefused, `refused by "a": "handshake not accepted"`)
		c.waitErr("a", ErrStaleIncarnation, `peer "bad" answered with incarnation 1`)
		if st := peerStatus(c.nodes["a"], "bad"); st.Incarnation != seen || st.Inbound {
			t.Errorf("a accepted the stale incarnation: %+v", st)
		}
		checkAlive(t, c, "a", "b", 1)
	})
}
