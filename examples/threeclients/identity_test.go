package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPKI is a CA the test keeps the key of, to issue odd certificates.
type testPKI struct {
	ca    *x509.Certificate
	key   ed25519.PrivateKey
	files certFiles
}

func newTestPKI(t *testing.T, members []string) *testPKI {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: randSerial(), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{ca: ca, key: key, files: certFiles{"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}}
	for _, id := range members {
		p.issue(t, id, nil)
	}
	return p
}

// issue writes client-<file>.crt and .key, a certificate for file unless
// mod changes it.
func (p *testPKI) issue(t *testing.T, file string, mod func(*x509.Certificate) any) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: randSerial(), Subject: pkix.Name{CommonName: file}, DNSNames: []string{file},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	var privKey any = key
	var pubKey any = pub
	if mod != nil {
		if k := mod(tmpl); k != nil {
			privKey = k
			pubKey = k.(*ecdsa.PrivateKey).Public()
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, pubKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(privKey)
	if err != nil {
		t.Fatal(err)
	}
	p.files[certName(file)] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p.files[keyName(file)] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
}

// Certificates that name several members, none, another member, or carry
// a key that cannot sign blocks are refused, each with its reason.
func TestIdentitiesRefuseBadCertificates(t *testing.T) {
	members := []string{"1", "2", "3"}
	if _, err := parseIdentities(newTestPKI(t, members).files, members, []string{"2"}); err != nil {
		t.Fatalf("good folder refused: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*x509.Certificate) any
		want string
	}{
		{"several names", func(c *x509.Certificate) any { c.DNSNames = []string{"2", "3"}; return nil }, "must name it alone"},
		{"no SAN", func(c *x509.Certificate) any { c.DNSNames = nil; return nil }, "must name it alone"},
		{"IP SAN too", func(c *x509.Certificate) any { c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}; return nil }, "must name it alone"},
		{"SAN of another", func(c *x509.Certificate) any { c.DNSNames = []string{"3"}; return nil }, "must name it alone"},
		{"no member", func(c *x509.Certificate) any {
			c.Subject.CommonName = "mallory"
			c.DNSNames = []string{"mallory"}
			return nil
		}, `names mallory, which is no client`},
		{"another member", func(c *x509.Certificate) any { c.Subject.CommonName = "1"; c.DNSNames = []string{"1"}; return nil }, "is a certificate for client 1, not 2"},
		{"server only", func(c *x509.Certificate) any {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			return nil
		}, "TLS client auth"},
		{"ECDSA", func(c *x509.Certificate) any {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return k
		}, "want Ed25519"},
	}
	for _, tc := range cases {
		p := newTestPKI(t, members)
		p.issue(t, "2", tc.mod)
		_, err := parseIdentities(p.files, members, []string{"2"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A certificate from another CA, and a key that is not the certificate's.
	p, other := newTestPKI(t, members), newTestPKI(t, members)
	p.files[certName("3")] = other.files[certName("3")]
	if _, err := parseIdentities(p.files, members, []string{"2"}); err == nil || !strings.Contains(err.Error(), "client-3.crt: not usable for TLS client auth under ca.crt") {
		t.Errorf("other CA: %v", err)
	}
	p = newTestPKI(t, members)
	p.files[keyName("2")] = other.files[keyName("2")]
	if _, err := parseIdentities(p.files, members, []string{"2"}); err == nil || !strings.Contains(err.Error(), "client-2.key does not belong to client-2.crt") {
		t.Errorf("foreign key: %v", err)
	}
}

// Over TLS, a peer whose certificate the CA signed for its id but with a
// key other than the genesis holds is refused.
func TestTLSConfigRequiresGenesisKey(t *testing.T) {
	members := []string{"1", "2"}
	p := newTestPKI(t, members)
	ids, err := parseIdentities(p.files, members, members)
	if err != nil {
		t.Fatal(err)
	}
	p.issue(t, "2", nil) // same CA, same name, new key
	rogue, err := parseIdentities(p.files, members, members)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client *identities
		ok     bool
	}{{"genuine", ids, true}, {"rogue", rogue, false}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		srv := tls.Server(a, ids.tlsConfig("1"))
		cliCfg := tc.client.tlsConfig("2")
		cliCfg.InsecureSkipVerify = true // the server's side is under test
		cliCfg.VerifyConnection = nil
		cli := tls.Client(b, cliCfg)
		var wg sync.WaitGroup
		var cerr error
		wg.Add(1)
		go func() { defer wg.Done(); cerr = cli.Handshake(); _ = cli.Close() }()
		serr := srv.Handshake()
		_ = srv.Close()
		wg.Wait()
		_ = cerr
		if (serr == nil) != tc.ok {
			t.Errorf("%s: server handshake: %v", tc.name, serr)
		}
		if !tc.ok && serr != nil && !strings.Contains(serr.Error(), "does not carry the key the ledger's genesis holds") {
			t.Errorf("%s: %v", tc.name, serr)
		}
	}
}

// A key readable by others is refused; certs -dir makes 0600 keys.
func TestLoadIdentitiesKeyMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	files, err := makeCerts([]string{"1", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCerts(dir, files, false); err != nil {
		t.Fatal(err)
	}
	if _, err := loadIdentities(dir, []string{"1", "2"}, []string{"1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "client-1.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadIdentities(dir, []string{"1", "2"}, []string{"1"}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("0644 key: %v", err)
	}
	if err := writeCerts(dir, files, false); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("overwrite without -force: %v", err)
	}
	if err := writeCerts(dir, files, true); err != nil {
		t.Fatalf("-force: %v", err)
	}
}

// Processes racing to make the certificates on first start all end up
// with the same folder.
func TestEnsureAutoCertsRace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "certs")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = ensureAutoCerts(dir, []string{"1", "2", "3"}) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "certs" {
		t.Fatalf("left behind: %v", entries)
	}
	if _, err := loadIdentities(dir, []string{"1", "2", "3"}, []string{"1", "2", "3"}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckExposure(t *testing.T) {
	local := map[string]string{"1": "127.0.0.1:1", "2": "localhost:2", "3": "[::1]:3"}
	if err := checkExposure(local, false, false); err != nil {
		t.Fatalf("loopback refused: %v", err)
	}
	for _, addr := range []string{"10.0.0.2:7002", ":7002", "0.0.0.0:7002", "example.com:7002", "127.0.0.1.nip.io:7002"} {
		peers := map[string]string{"1": "127.0.0.1:7001", "2": addr}
		err := checkExposure(peers, false, false)
		if err == nil || !strings.Contains(err.Error(), "not on this machine's loopback") || !strings.Contains(err.Error(), "threeclients certs") {
			t.Errorf("%s: %v", addr, err)
		}
		if err := checkExposure(peers, true, false); err != nil {
			t.Errorf("%s with -tls: %v", addr, err)
		}
		if err := checkExposure(peers, false, true); err != nil {
			t.Errorf("%s with -insecure: %v", addr, err)
		}
	}
}
