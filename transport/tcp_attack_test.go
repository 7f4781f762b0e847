package transport

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// issueEd25519 returns an Ed25519 certificate from ca with the given
// CommonName and DNS SANs, usable by client and server.
func (ca *testCA) issueEd25519(t *testing.T, cn string, dns ...string) tls.Certificate {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsWith returns a mutual-TLS config trusting ca, with certs.
func tlsWith(ca *testCA, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: certs, RootCAs: ca.pool, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13}
}

// rawHello dials addr (over TLS if cfg is set), sends h in protocol
// version v and returns the raw welcome bytes and the decoded welcome.
func rawHello(t *testing.T, addr string, cfg *tls.Config, v uint16, h hello) ([]byte, welcome, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var conn net.Conn = raw
	if cfg != nil {
		c := cfg.Clone()
		c.InsecureSkipVerify = true // the attacker does not care who answers
		tc := tls.Client(raw, c)
		if err := tc.Handshake(); err != nil {
			return nil, welcome{}, err
		}
		conn = tc
	}
	bw := bufio.NewWriter(conn)
	if err := writeHello(bw, v, h); err != nil {
		return nil, welcome{}, err
	}
	br := bufio.NewReader(conn)
	if _, err := readPreamble(br); err != nil {
		return nil, welcome{}, err
	}
	body, err := readFrame(br, maxHandshakeFrame, nil)
	if err != nil {
		return nil, welcome{}, err
	}
	var wl welcome
	err = decodeStruct(body, &wl)
	return body, wl, err
}

// restartAndCheck restarts id with a fresh incarnation (the clock's) and
// checks that peer accepts it.
func restartAndCheck(t *testing.T, c *tcpCluster, id, peer string) {
	t.Helper()
	if err := closeTCP(c.nodes[id]); err != nil {
		t.Fatal(err)
	}
	tr := c.start(id, nil, 0)
	tcpEventually(t, func() bool {
		st := peerStatus(c.nodes[peer], id)
		return st.Inbound && st.Connected && st.Incarnation == tr.Incarnation()
	}, "%s to accept the real %s again: %+v", peer, id, peerStatus(c.nodes[peer], id))
	// Messages the old incarnation left unacknowledged may reach the new
	// one (clock below 7); 7 must arrive.
	for _, pair := range [][2]string{{id, peer}, {peer, id}} {
		tcpSend(t, c.nodes[pair[0]], pair[1], 7, nil)
		for {
			m := tcpRecvData(t, c.nodes[pair[1]])
			if m.From == pair[0] && m.Clock == 7 {
				break
			}
			if m.Clock >= 7 {
				t.Fatalf("%s got %v, want clock 7 from %s", pair[1], m, pair[0])
			}
		}
	}
}

// TestTCPRefusesIdentityTakeoverWithHugeIncarnation: a hello claiming
// member "1" (the dialer of the pair) with incarnation 2^64-1 is refused and
// never stored, whether it fails on the cluster, on the plausibility bound,
// or on the certificate; the real "1" can still restart and connect.
func TestTCPRefusesIdentityTakeoverWithHugeIncarnation(t *testing.T) {
	tcpLeakCheck(t)
	t.Run("plain", func(t *testing.T) {
		c := newTCPCluster(t, []string{"1", "2"}, nil)
		checkAlive(t, c, "1", "2", 1)
		addr := c.addrs["2"]
		for _, tc := range []struct {
			cluster string
			want    error
		}{
			{"wrong-cluster", ErrClusterMismatch},
			{"test-cluster", ErrProtocol}, // the right cluster: the bound refuses it
		} {
			_, wl, err := rawHello(t, addr, nil, protocolVersion, hello{From: "1", To: "2", Cluster: tc.cluster, Incarnation: math.MaxUint64})
			if err != nil || wl.Refusal != refusalDenied {
				t.Fatalf("cluster %q: welcome %+v, %v", tc.cluster, wl, err)
			}
			c.waitErr("2", tc.want, "refused handshake")
		}
		c.waitErr("2", ErrProtocol, `incarnation 18446744073709551615, more than 24h0m0s ahead of our clock`)
		if st := peerStatus(c.nodes["2"], "1"); st.Incarnation != c.nodes["1"].Incarnation() {
			t.Fatalf("stored incarnation changed: %+v", st)
		}
		restartAndCheck(t, c, "1", "2")
	})
	t.Run("tls", func(t *testing.T) {
		ca := newTestCA(t, "ledger CA")
		certs := map[string]tls.Certificate{"1": ca.issueEd25519(t, "1", "1"), "2": ca.issueEd25519(t, "2", "2"), "3": ca.issueEd25519(t, "3", "3")}
		c := newTCPCluster(t, []string{"1", "2", "3"}, func(cfg *TCPConfig) { cfg.TLS = tlsWith(ca, certs[cfg.ID]) })
		checkAlive(t, c, "1", "2", 1)
		// Member 3, with its own valid certificate, claims to be 1; so does
		// an outsider whose certificate names nobody.
		for _, cert := range []tls.Certificate{certs["3"], ca.issueEd25519(t, "mallory")} {
			_, wl, err := rawHello(t, c.addrs["2"], tlsWith(ca, cert), protocolVersion, hello{From: "1", To: "2", Cluster: "test-cluster", Incarnation: math.MaxUint64})
			if err != nil || wl.Refusal != refusalDenied {
				t.Fatalf("welcome %+v, %v", wl, err)
			}
		}
		c.waitErr("2", ErrPeerCertificate, `peer "1": certificate names member "3"`)
		c.waitErr("2", ErrPeerCertificate, `peer "1": certificate names no member (CN "mallory"`)
		restartAndCheck(t, c, "1", "2")
	})
}

// TestTCPRefusesDuplicateSession: a second process running as a member
// (another address, a later incarnation) is refused while the first one's
// session is live, whether it dials (the lower id, "1") or kicks (the
// higher id, "2"); both sides log it, naming the id and both addresses,
// and the real pair keeps working.
func TestTCPRefusesDuplicateSession(t *testing.T) {
	for _, tc := range []struct{ dup, other string }{{"1", "2"}, {"2", "1"}} {
		t.Run("as "+tc.dup, func(t *testing.T) {
			tcpLeakCheck(t)
			c := newTCPCluster(t, []string{"1", "2"}, nil)
			checkAlive(t, c, "1", "2", 1)
			tcpEventually(t, func() bool { return peerStatus(c.nodes[tc.other], tc.dup).Inbound }, "%s's session at %s", tc.dup, tc.other)
			dupLog := &logBuf{}
			dupErrs := &errRec{}
			dup, err := NewTCP(TCPConfig{
				ID: tc.dup, ListenAddr: "127.0.0.1:0", Peers: map[string]string{tc.other: c.addrs[tc.other]}, Cluster: "test-cluster",
				Logger:     slog.New(slog.NewTextHandler(dupLog, nil)),
				BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond, onConnError: dupErrs.add,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer closeTCP(dup)
			waitLog(t, c.logs[tc.other], "refused handshake", "peer="+tc.dup, "duplicate session", "live session from 127.0.0.1:", "refused 127.0.0.1:")
			waitLog(t, dupLog, "handshake refused", "duplicate session exists", `\"`+tc.other+`\" at `+c.addrs[tc.other], "claiming our id")
			for _, l := range []*logBuf{c.logs[tc.other], dupLog} {
				for _, line := range strings.Split(l.String(), "\n") {
					if strings.Contains(line, "duplicate session") {
						t.Logf("%s", line)
						break
					}
				}
			}
			if err := dupErrs.find(ErrRefused, "test-cluster"); err != nil {
				t.Errorf("the refusal told the duplicate the cluster: %v", err)
			}
			if st := peerStatus(c.nodes[tc.other], tc.dup); st.Incarnation != c.nodes[tc.dup].Incarnation() {
				t.Errorf("the duplicate's incarnation was stored: %+v", st)
			}
			checkAlive(t, c, "1", "2", 2)
		})
	}
}

// TestTCPRefusesCertificateNotNamingOneMember: with TLS, a certificate naming
// two members, none, or another member than the id claimed is refused, as
// acceptor and as dialer; one naming the member and a host name is fine.
func TestTCPRefusesCertificateNotNamingOneMember(t *testing.T) {
	tcpLeakCheck(t)
	ca := newTestCA(t, "ledger CA")
	for _, tc := range []struct {
		name   string
		cn     string
		dns    []string
		accept bool
		want   string
	}{
		{"two members", "c", []string{"c", "b"}, false, `peer "c": certificate names 2 members`},
		{"two members in SANs", "host", []string{"b", "c"}, false, `peer "c": certificate names 2 members`},
		{"none", "mallory", []string{"mallory.example"}, false, `peer "c": certificate names no member`},
		{"another member", "b", []string{"b"}, false, `peer "c": certificate names member "b"`},
		{"member and host name", "c", []string{"c", "c.example"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certs := map[string]tls.Certificate{"a": ca.issueEd25519(t, "a", "a"), "b": ca.issueEd25519(t, "b", "b"), "c": ca.issueEd25519(t, tc.cn, tc.dns...)}
			c := newTCPCluster(t, []string{"a", "b", "c"}, func(cfg *TCPConfig) { cfg.TLS = tlsWith(ca, certs[cfg.ID]) })
			checkAlive(t, c, "a", "b", 1)
			if tc.accept {
				checkAlive(t, c, "a", "c", 1)
				return
			}
			c.waitErr("a", ErrPeerCertificate, "refused handshake", tc.want)
			c.waitErr("a", ErrPeerCertificate, `TLS handshake with "c"`, tc.want)
			if st := peerStatus(c.nodes["a"], "c"); st.Connected || st.Inbound || st.Incarnation != 0 {
				t.Errorf("a let c in: %+v", st)
			}
		})
	}
}

// TestTCPRefusalsLeakNothing: whatever is wrong with a hello, the refusal
// is one generic text with no id, incarnation or cluster in it.
func TestTCPRefusalsLeakNothing(t *testing.T) {
	tcpLeakCheck(t)
	const cluster = "secret-cluster-0xfeed"
	c := newTCPCluster(t, []string{"alpha", "bravo"}, func(cfg *TCPConfig) { cfg.Cluster = cluster })
	checkAlive(t, c, "alpha", "bravo", 1)
	seen := c.nodes["bravo"].Incarnation()
	now := uint64(time.Now().UnixNano())
	for _, tc := range []struct {
		name string
		v    uint16
		h    hello
		want string
	}{
		{"wrong cluster", protocolVersion, hello{From: "bravo", To: "alpha", Cluster: "guess", Incarnation: now}, refusalDenied},
		{"unknown id", protocolVersion, hello{From: "mallory", To: "alpha", Cluster: cluster, Incarnation: now}, refusalDenied},
		{"long id", protocolVersion, hello{From: strings.Repeat("\n\x1b[31m", 1000), To: "alpha", Cluster: cluster, Incarnation: now}, refusalDenied},
		{"wrong to", protocolVersion, hello{From: "bravo", To: "charlie", Cluster: cluster, Incarnation: now}, refusalDenied},
		{"own id", protocolVersion, hello{From: "alpha", To: "alpha", Cluster: cluster, Incarnation: now}, refusalDenied},
		{"older, while live", protocolVersion, hello{From: "bravo", To: "alpha", Cluster: cluster, Incarnation: seen - 1}, refusalDuplicate},
		{"zero", protocolVersion, hello{From: "bravo", To: "alpha", Cluster: cluster}, refusalDenied},
		{"implausible", protocolVersion, hello{From: "bravo", To: "alpha", Cluster: cluster, Incarnation: now + uint64(48*time.Hour)}, refusalDenied},
		{"duplicate", protocolVersion, hello{From: "bravo", To: "alpha", Cluster: cluster, Incarnation: seen + 1}, refusalDuplicate},
		{"version", protocolVersion + 1, hello{From: "bravo", To: "alpha", Cluster: cluster, Incarnation: now}, refusalVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, wl, err := rawHello(t, c.addrs["alpha"], nil, tc.v, tc.h)
			if err != nil {
				t.Fatal(err)
			}
			if wl != (welcome{Refusal: tc.want}) {
				t.Errorf("welcome %+v, want only the refusal %q", wl, tc.want)
			}
			for _, secret := range []string{cluster, "alpha", "bravo", "mallory"} {
				if strings.Contains(string(body), secret) {
					t.Errorf("refusal %q contains %q", body, secret)
				}
			}
		})
	}
	waitLog(t, c.logs["alpha"], "refused handshake", `\\n\\x1b[31m`, "...(6000 bytes)")
	for _, line := range strings.Split(c.logs["alpha"].String(), "\n") {
		if strings.Contains(line, "\x1b") || len(line) > 1000 {
			t.Errorf("a peer-supplied id reached the log unescaped or whole: %q", line)
		}
	}
	checkAlive(t, c, "alpha", "bravo", 2)
}

// TestTCPHandshakeFloodBoundsMemory: thousands of connections that never
// send a hello cost the acceptor little heap: buffers come after the
// handshake and each connection beyond maxPendingHandshakes evicts a
// pending one.
func TestTCPHandshakeFloodBoundsMemory(t *testing.T) {
	tcpLeakCheck(t)
	const flood = 2000
	var capped atomic.Int64
	c := newTCPCluster(t, []string{"a", "b"}, func(cfg *TCPConfig) {
		cfg.HandshakeTimeout = time.Hour // the flood's pending handshakes stay until evicted
		cfg.preambleTimeout = time.Hour
		if cfg.ID == "a" {
			cfg.onEvent = func(_, ev string) {
				if ev == "over handshake cap" {
					capped.Add(1)
				}
			}
		}
	})
	checkAlive(t, c, "a", "b", 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for range flood {
		conn, err := net.Dial("tcp", c.addrs["a"])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	tcpEventually(t, func() bool { return capped.Load() >= flood-maxPendingHandshakes },
		"a to close the connections over the cap (%d so far)", capped.Load())
	waitLog(t, c.logs["a"], "level=WARN", "too many handshakes under way", "limit=32")
	if n := strings.Count(c.logs["a"].String(), "level=WARN msg=\"transport: too many handshakes"); n != 1 {
		t.Errorf("%d Warn lines about the flood, want 1", n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth with %d idle connections (both ends in this process): %d KiB", flood, growth>>10)
	if limit := int64(16 << 20); growth > limit {
		t.Errorf("heap grew by %d bytes, limit %d", growth, limit)
	}
	for _, conn := range conns {
		conn.Close()
	}
	conns = conns[:0]
	checkAlive(t, c, "a", "b", 2)
}

// TestTCPQuarantine: after Quarantine, nothing more from that incarnation is
// delivered and it cannot reconnect; our queued messages wait; a restart of
// the peer is accepted with PeerUp first and gets them.
func TestTCPQuarantine(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "b"}, nil)
	a, b := c.nodes["a"], c.nodes["b"]
	checkAlive(t, c, "a", "b", 1)
	oldInc := b.Incarnation()
	a.Quarantine("b", oldInc, errors.New("bad block at height 3"))
	waitLog(t, c.logs["a"], "level=WARN", "peer quarantined", "peer=b", "incarnation=", "bad block at height 3")
	tcpEventually(t, func() bool { st := peerStatus(a, "b"); return !st.Inbound && !st.Connected }, "a's streams with b closed")
	tcpSend(t, b, "a", 99, []byte("from the quarantined incarnation"))
	tcpSend(t, a, "b", 50, []byte("for the next incarnation"))
	c.waitErr("a", ErrQuarantined, "refused handshake", "quarantined (mark")
	c.waitErr("a", ErrQuarantined, `peer "b" answered with incarnation`)
	c.waitErr("b", ErrRefused, `refused by "a": "handshake not accepted"`)
	a.Quarantine("nobody", 1, errors.New("ignored")) // unknown: a no-op
	if err := closeTCP(b); err != nil {
		t.Fatal(err)
	}
	b = c.start("b", nil, 0)
	for {
		m := tcpRecv(t, a)
		if m.From == "b" && m.Clock == 99 {
			t.Fatalf("a got %v from the quarantined incarnation", m)
		}
		if m.Kind == lamportmutex.PeerUp && m.From == "b" {
			if m.Incarnation != b.Incarnation() {
				t.Fatalf("a got %v, want PeerUp of incarnation %d", m, b.Incarnation())
			}
			break
		}
	}
	for { // before it: what the old b left unacknowledged (clock 1)
		m := tcpRecvData(t, b)
		if m.From == "a" && m.Clock == 50 {
			break
		}
		if m.Clock != 1 {
			t.Fatalf("the new b got %v, want what a queued during the quarantine", m)
		}
	}
	checkAlive(t, c, "a", "b", 2)
}

// TestTCPSendRefusesACallWhole: a call of Send whose messages do not all
// fit is refused whole, with ErrQueueFull, and queues none of them.
func TestTCPSendRefusesACallWhole(t *testing.T) {
	var o outPeer
	o.init(1000)
	frame := frameBytes(nil)
	if _, err := o.push([]outBody{{body: make([]byte, 600-frame)}, {body: make([]byte, 500-frame)}}); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("two messages of 1100 bytes in all: %v, want ErrQueueFull", err)
	}
	if _, err := o.push([]outBody{{body: make([]byte, 300-frame)}, {body: make([]byte, 300-frame), data: true}}); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("a Data message taking the queue to 600 of 1000: %v, want ErrQueueFull", err)
	}
	if o.qBytes != 0 || len(o.q) != 0 || o.nextSeq != 1 {
		t.Fatalf("refused calls queued something: %d bytes, %d messages, next seq %d", o.qBytes, len(o.q), o.nextSeq)
	}
	if _, err := o.push([]outBody{{body: make([]byte, 300-frame)}, {body: make([]byte, 200-frame), data: true}}); err != nil {
		t.Fatal(err)
	}
	if o.qBytes != 500 || len(o.q) != 2 || o.nextSeq != 3 || o.q[1].seq != 2 {
		t.Fatalf("after a call of two: %d bytes, %d messages, next seq %d", o.qBytes, len(o.q), o.nextSeq)
	}
}

// TestTCPSendQueueBoundedInBytes: what is held for a peer (queued, written
// or kept while it is down, until acknowledged) stays within QueueBytes,
// and a Data message within half of it; Send refuses with ErrQueueFull,
// queueing nothing, and never waits.
func TestTCPSendQueueBoundedInBytes(t *testing.T) {
	var o outPeer
	o.init(1000)
	push := func(n int, data bool) error {
		_, err := o.push([]outBody{{body: make([]byte, n), data: data}})
		return err
	}
	frame := frameBytes(nil)
	if err := push(400-frame, false); err != nil {
		t.Fatal(err)
	}
	if err := push(101-frame, true); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("a Data message taking the queue to 501 of 1000: %v, want ErrQueueFull", err)
	}
	if err := push(100-frame, true); err != nil {
		t.Fatalf("a Data message taking the queue to half of it: %v", err)
	}
	if err := push(500-frame, false); err != nil {
		t.Fatalf("a message filling the queue: %v", err)
	}
	if err := push(1, false); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("a message past the bound: %v, want ErrQueueFull", err)
	}
	if o.qBytes != 1000 || len(o.q) != 3 || o.nextSeq != 4 {
		t.Fatalf("refusals queued something: %d bytes, %d messages, next seq %d", o.qBytes, len(o.q), o.nextSeq)
	}
	changed := o.flushed(o.epoch, 1)
	if changed == nil {
		t.Fatal("nothing acknowledged, yet flushed")
	}
	o.mu.Lock()
	o.ackTo(1)
	o.mu.Unlock()
	select {
	case <-changed:
	default:
		t.Fatal("an acknowledgement freed room without saying so")
	}
	if o.flushed(o.epoch, 1) != nil {
		t.Fatal("seq 1 acknowledged, yet not flushed")
	}
	if err := push(400-frame, false); err != nil {
		t.Fatalf("the acknowledgement freed no room: %v", err)
	}

	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "b"}, func(cfg *TCPConfig) { cfg.QueueBytes = 1000 })
	if err := closeTCP(c.nodes["b"]); err != nil { // nothing is acknowledged
		t.Fatal(err)
	}
	a := c.nodes["a"]
	max := a.MaxPayload()
	if max <= 0 || max >= 500 {
		t.Fatalf("MaxPayload %d with QueueBytes 1000", max)
	}
	msg := lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "b", Clock: 1, Payload: make([]byte, max+1)}
	if err := a.Send(msg); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Send above MaxPayload: %v, want ErrFrameTooLarge", err)
	}
	msg.Payload = make([]byte, max)
	msg.Kind = lamportmutex.Data
	if err := a.Send(msg); err != nil {
		t.Fatalf("a Data message of MaxPayload on an empty queue: %v", err)
	}
	if err := a.Send(msg); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("a second Data message of MaxPayload: %v, want ErrQueueFull", err)
	}
	msg.Kind = lamportmutex.Reply
	if err := a.Send(msg); err != nil {
		t.Fatalf("a Reply beside the Data: %v", err)
	}
	if err := a.Send(msg); !errors.Is(err, lamportmutex.ErrQueueFull) {
		t.Fatalf("a third message of MaxPayload: %v, want ErrQueueFull", err)
	}
	if st := peerStatus(a, "b"); st.Queued != 2 || st.QueuedBytes > 1000 {
		t.Fatalf("queued %d messages, %d bytes; want 2, at most 1000", st.Queued, st.QueuedBytes)
	}
}

// TestTCPRefusesImplausibleWelcome: a process at a peer's address answering
// with incarnation 2^64-1 is refused by the dialer, and the number is not
// stored.
func TestTCPRefusesImplausibleWelcome(t *testing.T) {
	tcpLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // the impostor at b's address
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br, bw := bufio.NewReader(conn), bufio.NewWriter(conn)
			check := helloCheck{version: protocolVersion, self: "b", cluster: "test-cluster", known: func(string) bool { return true }}
			if _, _, err := readHello(br, check); err == nil {
				_ = writeWelcome(bw, protocolVersion, welcome{From: "b", Incarnation: math.MaxUint64})
			}
			conn.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"a": cfg.Peers["a"], "b": ln.Addr().String()}
	})
	a := c.nodes["a"]
	c.waitErr("a", ErrProtocol, `peer "b" presented incarnation 18446744073709551615, more than 24h0m0s ahead`)
	p := a.peers["b"]
	p.out.mu.Lock()
	remote := p.out.remoteInc
	p.out.mu.Unlock()
	if st := peerStatus(a, "b"); st.Incarnation != 0 || st.Connected || remote != 0 {
		t.Fatalf("a adopted the impostor's welcome: %+v, remote incarnation %d", st, remote)
	}
}
