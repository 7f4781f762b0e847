package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCLI runs the program to its end and returns its exit status and
// output.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// makeCertsDir runs "threeclients certs" for peers into a new folder.
func makeCertsDir(t *testing.T, peers string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	code, out, errs := runCLI(t, "", "certs", "-dir", dir, "-peers", peers)
	if code != 0 {
		t.Fatalf("certs: status %d\n%s%s", code, out, errs)
	}
	return dir
}

// Three clients with -tls DIR transfer and agree; outsiders without a
// certificate of the ledger's CA cannot get a message in, and the cluster
// goes on.
func TestThreeClientsTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	certs := makeCertsDir(t, peers)
	for _, name := range []string{"client-1.key", "client-2.key", "client-3.key"} {
		st, err := os.Stat(filepath.Join(certs, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", name, err, st.Mode().Perm())
		}
	}
	if st, err := os.Stat(certs); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v; want mode 0700", certs, err)
	}
	// A second run does not overwrite the keys.
	if code, _, errs := runCLI(t, "", "certs", "-dir", certs, "-peers", peers); code == 0 || !strings.Contains(errs, "not overwriting keys") {
		t.Fatalf("certs over an existing folder: status %d, stderr %q", code, errs)
	}

	data := t.TempDir()
	ids := []string{"1", "2", "3"}
	procs := map[string]*proc{}
	for _, id := range ids {
		procs[id] = startProc(t, id, peers, data, "-tls", certs)
	}
	for _, id := range ids {
		procs[id].expect(`all peers connected`)
	}
	if _, err := os.Stat(filepath.Join(data, "certs")); !os.IsNotExist(err) {
		t.Fatalf("with -tls, a certificates folder was made in the data folder: %v", err)
	}

	procs["1"].send("transfer 2 3")
	procs["1"].expect(`transfer 1 -> 2 amount 3: SUCCESS`)
	procs["2"].send("transfer 3 4")
	procs["2"].expect(`transfer 2 -> 3 amount 4: SUCCESS`)

	// Outsiders at client 1's port: plain TCP, and TLS with a certificate
	// for "2" that the ledger's CA did not sign.
	plain, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(hangGuard))
	_, _ = plain.Write([]byte("LMTX hello, I am client 2\n"))
	answer, err := io.ReadAll(plain)
	if err != nil {
		t.Fatalf("plain dialer: the client did not close the connection: %v", err)
	}
	for _, secret := range []string{"cluster", "incarnation", "lamport"} {
		if strings.Contains(strings.ToLower(string(answer)), secret) {
			t.Errorf("plain dialer was told %q", answer)
		}
	}
	self := selfSignedCert(t, "2")
	tc, err := tls.Dial("tcp", addrs[0], &tls.Config{Certificates: []tls.Certificate{self}, InsecureSkipVerify: true})
	if err == nil {
		_, _ = tc.Write([]byte("hello"))
		buf := make([]byte, 1)
		_, err = tc.Read(buf)
		tc.Close()
	}
	if err == nil {
		t.Fatal("TLS dialer with a self-made certificate was answered")
	}
	waitStderr(t, procs["1"], "TLS handshake")

	// Nothing arrived from them: the chains hold exactly the two transfers,
	// and the cluster still commits.
	procs["3"].send("transfer 1 5")
	procs["3"].expect(`transfer 3 -> 1 amount 5: SUCCESS`)
	var chains []string
	for _, id := range ids {
		chains = append(chains, procs[id].waitChain(3))
	}
	if chains[0] != chains[1] || chains[1] != chains[2] {
		t.Fatalf("chains differ:\n%s\n%s\n%s", chains[0], chains[1], chains[2])
	}
	for _, id := range ids {
		procs[id].send("table")
		procs[id].expect(`balance table: 1=12 2=9 3=9$`)
	}
	for _, id := range ids {
		procs[id].exit()
	}
}

// waitStderr polls p's stderr until it holds want.
func waitStderr(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(p.stderr.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("client %s: stderr never said %q:\n%s", p.id, want, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func selfSignedCert(t *testing.T, name string) tls.Certificate {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A client given another member's certificate and key is refused before
// it starts, and says why.
func TestThreeClientsRefuseAnotherMembersCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	certs := makeCertsDir(t, peers)
	for _, ext := range []string{".crt", ".key"} {
		data, err := os.ReadFile(filepath.Join(certs, "client-1"+ext))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, "client-2"+ext), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errs := runCLI(t, "", "-tls", certs, "-peers", peers, "-memory", "2")
	if code != 1 || !strings.Contains(errs, "client-2.crt is a certificate for client 1, not 2") {
		t.Fatalf("status %d, stderr:\n%s", code, errs)
	}
	// The folder is refused as a whole: client 1 cannot start on it either.
	code, _, errs = runCLI(t, "", "-tls", certs, "-peers", peers, "-memory", "1")
	if code != 1 || !strings.Contains(errs, "client-2.crt is a certificate for client 1") {
		t.Fatalf("client 1: status %d, stderr:\n%s", code, errs)
	}
}

// Without -tls, a peer address off loopback is refused with the reason;
// -insecure accepts it and says that TLS is off.
func TestThreeClientsExposure(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	addrs := freePorts(t, 2)
	// 192.0.2.0/24 is TEST-NET-1: never routed, so never dialed successfully.
	peers := fmt.Sprintf("1=%s,2=%s,3=192.0.2.1:7003", addrs[0], addrs[1])
	data := t.TempDir()
	code, _, errs := runCLI(t, "", "-peers", peers, "-data", data, "1")
	if code != 1 || !strings.Contains(errs, `client 3 has address "192.0.2.1:7003", which is not on this machine's loopback`) ||
		!strings.Contains(errs, "-tls DIR") || !strings.Contains(errs, "-insecure") {
		t.Fatalf("status %d, stderr:\n%s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(data, "certs")); !os.IsNotExist(err) {
		t.Fatalf("refused start made certificates: %v", err)
	}
	code, out, errs := runCLI(t, "balance\nexit\n", "-peers", peers, "-data", data, "-insecure", "1")
	if code != 0 || !strings.Contains(errs, "-insecure: TLS is off") || !strings.Contains(out, "[1 @0] balance of client 1: 10") {
		t.Fatalf("-insecure: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// With -tls the address is the user's choice.
	certs := makeCertsDir(t, peers)
	code, out, errs = runCLI(t, "balance\nexit\n", "-peers", peers, "-memory", "-tls", certs, "1")
	if code != 0 || strings.Contains(errs, "TLS is off") || !strings.Contains(out, "[1 @0] balance of client 1: 10") {
		t.Fatalf("-tls: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// A client whose stdout nobody reads does not stop the other two from
// committing; once its output is read again, it says how much was lost and
// goes on.
func TestThreeClientsStalledOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	data := t.TempDir()
	p1 := startProc(t, "1", peers, data, "-balance", "1000", "-memory")
	p2 := startProc(t, "2", peers, data, "-balance", "1000", "-memory")
	p3, read3 := startProcHeld(t, "3", peers, data, "-balance", "1000", "-memory")
	p1.expect(`all peers connected`)
	p2.expect(`all peers connected`)

	// Client 3 prints far more than a pipe holds plus its queue's bound
	// (printQueueLines), then commits a transfer: once client 1 has that
	// block, client 3's output is stuck and lines are being dropped.
	const helps = printQueueLines + 2000
	if _, err := io.WriteString(p3.stdin, strings.Repeat("help\n", helps)+"transfer 1 1\n"); err != nil {
		t.Fatal(err)
	}
	p1.expect(`block #1 \S+ from client 3 inserted: 3 -> 1 amount 1`)

	const rounds = 150
	for range rounds {
		p1.send("transfer 2 1")
		p2.send("transfer 1 1")
	}
	for _, p := range []*proc{p1, p2} {
		for range rounds {
			p.expect(`transfer \d -> \d amount 1: SUCCESS`)
		}
	}

	read3()
	m := p3.expect(`^\((\d+) lines of output lost: the output was not being read\)$`)
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Fatalf("client 3: %q", m[0])
	}
	p3.send("table")
	p3.expect(`^\[3 @\d+\] balance table: 1=1001 2=1000 3=999$`)
	h1, c1 := p1.chain()
	if h1 != 1+2*rounds {
		t.Fatalf("client 1 has %d blocks, want %d", h1, 1+2*rounds)
	}
	if c3 := p3.waitChain(h1); c3 != c1 {
		t.Fatalf("chains differ:\n%s\n%s", c1, c3)
	}
}

// A 2 MiB input line gets one error line, and the session goes on.
func TestThreeClientsLongInputLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s", addrs[0], addrs[1])
	p := startProc(t, "1", peers, t.TempDir(), "-memory")
	p.send(strings.Repeat("x", 2<<20))
	p.expect(`^\[1 @\d+\] error: line longer than 1048576 bytes ignored$`)
	p.send("balance")
	p.expect(`^\[1 @\d+\] balance of client 1: 10$`)
	p.exit()
}
