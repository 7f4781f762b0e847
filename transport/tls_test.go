package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

// testCA is a certificate authority made up for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for name (as CN and DNS SAN), usable by
// client and server.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTCPMutualTLS: peers with certificates naming their ids talk; a peer
// whose certificate names another id, one from another CA and one without
// a certificate are refused, and both sides report why.
func TestTCPMutualTLS(t *testing.T) {
	tcpLeakCheck(t)
	ca, rogue := newTestCA(t, "ledger CA"), newTestCA(t, "rogue CA")
	configs := map[string]*tls.Config{}
	mk := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: certs, RootCAs: ca.pool, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13}
	}
	configs["a"] = mk(ca.issue(t, "a"))
	configs["b"] = mk(ca.issue(t, "b"))
	configs["c"] = mk(ca.issue(t, "mallory")) // valid chain, wrong name
	configs["d"] = mk(rogue.issue(t, "d"))    // right name, unknown CA
	configs["e"] = mk()                       // no certificate at all
	c := newTCPCluster(t, []string{"a", "b", "c", "d", "e"}, func(cfg *TCPConfig) {
		cfg.TLS = configs[cfg.ID]
	})
	checkAlive(t, c, "a", "b", 1)

	// c: the acceptor refuses the id its certificate does not name...
	c.waitErr("a", ErrPeerCertificate, `peer "c": certificate names no member (CN "mallory", DNS ["mallory"])`)
	c.waitErr("c", ErrRefused, `refused by "a": "handshake not accepted"`)
	// ...and so does a dialer reaching c.
	c.waitErr("a", ErrPeerCertificate, `TLS handshake with "c"`, `peer "c": certificate names no member`)
	waitLog(t, c.logs["a"], "refused handshake", "peer=c", "mallory")

	// d: a certificate from an unknown authority. As a client, d finds no
	// certificate the acceptor's CAs accept and sends none.
	c.waitErr("a", nil, `TLS handshake with "d"`, "certificate signed by unknown authority")
	c.waitErr("d", nil, `"a"`, "tls: certificate required")

	// e: no certificate, as client or server.
	c.waitErr("a", nil, "TLS handshake: ", "client didn't provide a certificate")
	c.waitErr("e", nil, `"a"`, "tls: certificate required")
	c.waitErr("a", nil, `TLS handshake with "e"`)

	for _, bad := range []string{"c", "d", "e"} {
		if st := peerStatus(c.nodes["a"], bad); st.Connected || st.Inbound || st.Incarnation != 0 {
			t.Errorf("a let %s in: %+v", bad, st)
		}
	}
	checkAlive(t, c, "b", "a", 2)
}

// TestTCPTLSQuarantineRefusesOlder: with TLS a quarantine refuses the
// quarantined incarnation and older ones: a hello authenticated as a with
// an incarnation between a's stored one and the quarantined one is
// refused as quarantined.
func TestTCPTLSQuarantineRefusesOlder(t *testing.T) {
	tcpLeakCheck(t)
	ca := newTestCA(t, "ledger CA")
	configs := map[string]*tls.Config{}
	for _, id := range []string{"a", "b"} {
		configs[id] = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, id)}, RootCAs: ca.pool, ClientCAs: ca.pool, MinVersion: tls.VersionTLS13}
	}
	c := newTCPCluster(t, []string{"a", "b"}, func(cfg *TCPConfig) { cfg.TLS = configs[cfg.ID] })
	a, b := c.nodes["a"], c.nodes["b"]
	checkAlive(t, c, "a", "b", 1)
	inc := a.Incarnation()
	if err := closeTCP(a); err != nil {
		t.Fatal(err)
	}
	tcpEventually(t, func() bool { return !peerStatus(b, "a").Inbound }, "b to see a's stream end")
	b.Quarantine("a", inc+5, errors.New("bad input"))
	_, wl, err := rawHello(t, c.addrs["b"], configs["a"], protocolVersion, hello{From: "a", To: "b", Cluster: "test-cluster", Incarnation: inc + 3})
	if err == nil && wl.Refusal == "" {
		t.Fatalf("an incarnation below the quarantined one was accepted: %+v", wl)
	}
	c.waitErr("b", ErrQuarantined, `presented incarnation`)
}
