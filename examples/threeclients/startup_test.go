package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// runHere runs the program in this process to its end.
func runHere(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func checkNoLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// -h, -help and --help print the usage to stdout and exit 0, for the
// clients and for certs.
func TestRunHelp(t *testing.T) {
	checkNoLeaks(t)
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"1", "-h"}, {"-memory", "-h"}} {
		code, out, errs := runHere(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "usage: threeclients [flags] [client]") || !strings.Contains(out, "-algorithm") || errs != "" {
			t.Errorf("%q: status %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errs)
		}
	}
	for _, args := range [][]string{{"certs", "-h"}, {"certs", "--help"}} {
		code, out, errs := runHere(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "usage: threeclients certs -dir DIR") || !strings.Contains(out, "-force") || errs != "" {
			t.Errorf("%q: status %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errs)
		}
	}
}

// A bad flag, or two clients, is one error line and a short usage line on
// stderr, status 2.
func TestRunUsageErrors(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"1", "-bogus"}, "threeclients: flag provided but not defined: -bogus"},
		{[]string{"1", "2"}, "threeclients: one client at most, got 2: 1 2"},
		{[]string{"-memory", "1", "-balance", "ten"}, `threeclients: invalid value "ten" for flag -balance: parse error`},
		{[]string{"certs", "-bogus"}, "threeclients certs: flag provided but not defined: -bogus"},
		{[]string{"certs", "-dir", "x", "1"}, "threeclients certs: no arguments expected after the flags, got 1"},
	}
	for _, tc := range tests {
		code, out, errs := runHere(t, "", tc.args...)
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		if code != 2 || out != "" || len(lines) != 2 || lines[0] != tc.want || !strings.HasPrefix(lines[1], "usage: threeclients") ||
			!strings.Contains(lines[1], "-h\" lists the flags") {
			t.Errorf("%q: status %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, out, errs)
		}
	}
}

// Config errors stop the program before anything starts: nothing on
// stdout, no data folder made, one error line naming the file or flag.
func TestRunConfigErrorsBeforeStart(t *testing.T) {
	checkNoLeaks(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	n := 0
	write := func(text string) string {
		n++
		path := filepath.Join(dir, fmt.Sprintf("clients%d.json", n))
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-config", write(`{"balance": 0, ` + twoClients + `}`)}, dir + `/clients1.json: "balance" must be positive, got 0`},
		{[]string{"-config", write(`{"clients": {"1": "127.0.0.1:7001", "1": "127.0.0.1:7002"}}`)}, dir + `/clients2.json: key "1" appears twice in "clients"`},
		{[]string{"-config", write(`{"clients": {"1": "127.0.0.1:7001", "2": "127.0.0.1:7001"}}`)}, dir + `/clients3.json: "clients": clients 1 and 2 have the same address 127.0.0.1:7001`},
		{[]string{"2", "-peers", "1=127.0.0.1:7001,2=127.0.0.1:99999"}, `-peers: client 2: address "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`},
		{[]string{"-memory", "-data", data}, "-data is not used with -memory when every client runs in this process"},
		{[]string{"-batch", "0"}, "-batch must be from 1 to 4096, got 0"},
		{[]string{"-algorithm", "bakery"}, `-algorithm "bakery": want lamport or ricart-agrawala`},
	}
	for _, tc := range tests {
		args := tc.args
		if !strings.Contains(strings.Join(args, " "), "-data") {
			args = append(args, "-data", data)
		}
		code, out, errs := runHere(t, "", args...)
		if code != 1 || out != "" || !strings.HasPrefix(errs, "threeclients: "+tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: status %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errs)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Fatalf("%q: the data folder was made: %v", args, err)
		}
	}
}

// Flags after the client number work; so do -batch and -algorithm.
func TestRunFlagsAfterClient(t *testing.T) {
	checkNoLeaks(t)
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s", addrs[0], addrs[1])
	data := t.TempDir() // the certificates
	code, out, errs := runHere(t, "balance\n", "1", "-peers", peers, "-data", data, "-memory")
	if code != 0 || !strings.Contains(out, "[1 @0] balance of client 1: 10") {
		t.Errorf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runHere(t, "balance\n", "-data", data, "-memory", "2", "-delay", "1s", "-peers", peers,
		"-batch", "1", "-algorithm", "ricart-agrawala", "-balance", "7")
	if code != 0 || !strings.Contains(out, "[2 @0] balance of client 2: 7") {
		t.Errorf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// With every client in one process, a port in use is said once, naming
// the client and the address, and no client starts.
func TestRunPortInUse(t *testing.T) {
	checkNoLeaks(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], held.Addr(), addrs[1])
	want := fmt.Sprintf("threeclients: client 2 cannot listen on %s: the port is in use, by another program or another threeclients. "+
		"Stop it, or give other addresses with -peers or -config\n", held.Addr())
	code, out, errs := runHere(t, "1 balance\n", "-memory", "-peers", peers)
	if code != 1 || out != "" || errs != want {
		t.Errorf("all in one: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs = runHere(t, "balance\n", "-memory", "-data", t.TempDir(), "-peers", peers, "2")
	if code != 1 || out != "" || errs != want {
		t.Errorf("client 2: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, a := range addrs { // closed again
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s stays taken: %v", a, err)
		}
		ln.Close()
	}
}

// A data folder of another ledger, and a corrupt ledger file, are refused
// with a hint naming the file.
func TestRunStoreHints(t *testing.T) {
	checkNoLeaks(t)
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s", addrs[0], addrs[1])
	data := t.TempDir()
	file := filepath.Join(data, "client-1.log")
	if code, out, errs := runHere(t, "", "-peers", peers, "-data", data, "1"); code != 0 {
		t.Fatalf("first start: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, out, errs := runHere(t, "", "-peers", peers, "-data", data, "1", "-balance", "20")
	if code != 1 || out != "" || !strings.Contains(errs, "genesis does not match") ||
		!strings.Contains(errs, "\nhint: "+file+" holds another ledger") || !strings.Contains(errs, "use -memory") {
		t.Errorf("another ledger: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff // inside the genesis record
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runHere(t, "", "-peers", peers, "-data", data, "1")
	if code != 1 || out != "" || !strings.Contains(errs, "damaged record") ||
		!strings.Contains(errs, "\nhint: if the other clients are running and have the blocks, move "+file+" aside") {
		t.Errorf("corrupt: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// With every client in one process, a client that fails to start stops the
// ones started before it, and every listening socket is closed.
func TestRunAllInOneStopsOnFailure(t *testing.T) {
	checkNoLeaks(t)
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	data := t.TempDir()
	if code, out, errs := runHere(t, "", "-peers", peers, "-data", data); code != 0 {
		t.Fatalf("first start: status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	file := filepath.Join(data, "client-2.log")
	if err := os.WriteFile(file, []byte("not a ledger"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runHere(t, "1 balance\n", "-peers", peers, "-data", data)
	if code != 1 || !strings.Contains(errs, "threeclients: client 2: ledger store "+file) || !strings.Contains(errs, "move "+file+" aside") ||
		strings.Contains(out, "balance of client") {
		t.Errorf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("%s stays taken: %v", a, err)
		}
		ln.Close()
	}
}
