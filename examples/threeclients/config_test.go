package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

const twoClients = `"clients": {"1": "127.0.0.1:7001", "2": "127.0.0.1:7002"}`

func TestParseConfig(t *testing.T) {
	fc, err := parseConfig([]byte(`{` + twoClients + `}`))
	if err != nil || fc.Balance != nil || len(fc.Clients) != 2 || fc.Clients["2"] != "127.0.0.1:7002" {
		t.Fatalf("no balance: %+v, %v", fc, err)
	}
	fc, err = parseConfig([]byte(`{"balance": 25, ` + twoClients + `}`))
	if err != nil || fc.Balance == nil || *fc.Balance != 25 {
		t.Fatalf("balance 25: %+v, %v", fc, err)
	}
	bad := []struct{ json, want string }{
		{`{"clients": {"1": "a:1", "1": "b:2"}}`, `key "1" appears twice in "clients"`},
		{`{"balance": 5, ` + twoClients + `, "balance": 6}`, `key "balance" appears twice`},
		{`{` + twoClients + `, "clients": {}}`, `key "clients" appears twice`},
		{`{"balance": 0, ` + twoClients + `}`, `"balance" must be positive, got 0`},
		{`{"balance": -3, ` + twoClients + `}`, `"balance" must be positive, got -3`},
		{`{"balance": 1.5, ` + twoClients + `}`, `"balance" must be a positive whole number, got 1.5`},
		{`{"balance": 1e3, ` + twoClients + `}`, `"balance" must be a positive whole number, got 1e3`},
		{`{"balance": "10", ` + twoClients + `}`, `"balance" must be a positive whole number, got "10"`},
		{`{"balance": null, ` + twoClients + `}`, `"balance" must be a positive whole number, got null`},
		{`{"balance": 99999999999999999999, ` + twoClients + `}`, `"balance" is too large`},
		{`{"Balance": 5, ` + twoClients + `}`, `unknown key "Balance"`},
		{`{"peers": {}}`, `unknown key "peers"`},
		{`{"balance": 5}`, `no "clients"`},
		{`{"clients": null}`, `"clients" must be an object`},
		{`{"clients": {"1": 7001}}`, `"clients" must be an object`},
		{`{"clients": ["1", "2"]}`, `"clients" must be an object`},
		{`{"clients": {"1": "127.0.0.1:7001"}}`, `"clients": need at least two clients`},
		{`{"clients": {"1": "127.0.0.1:7001", "2": "127.0.0.1:99999"}}`, `"clients": client 2: address "127.0.0.1:99999": port "99999" is not a number from 1 to 65535`},
		{`{"clients": {"1": "127.0.0.1:7001", "2": "127.0.0.1:7001"}}`, `"clients": clients 1 and 2 have the same address 127.0.0.1:7001`},
		{`{"clients": {"1": "127.0.0.1:7001", "a/b": "127.0.0.1:7002"}}`, `"clients": client id a/b cannot name a certificate`},
		{`{"clients": {"1": "127.0.0.1:7001", "` + strings.Repeat("x", 1000) + `": "127.0.0.1:7002"}}`, `"clients": client id "xxxxxxxxxxxxxxxxxxxx"... is longer than 63 bytes`},
		{`{"clients": {}, "` + strings.Repeat("k", 1000) + `": 1}`, `unknown key "` + strings.Repeat("k", 64) + `" (the keys`},
		{`{"clients": {"` + strings.Repeat("k", 1000) + `": 1, "` + strings.Repeat("k", 1000) + `": 2}}`, `key "` + strings.Repeat("k", 64) + `" appears twice in "clients"`},
		{`[]`, `want a JSON object`},
		{`null`, `want a JSON object`},
		{``, `not valid JSON: it ends early`},
		{`{"clients": `, `not valid JSON: it ends early`},
		{"{\n  \"clients\" 1}", `not valid JSON at line 2, column 13`},
		{`{` + twoClients + `} {}`, `more after the JSON object`},
		{`{"clients": {"1": [[[[[[[[[]]]]]]]]]}}`, `nested deeper than 8`},
	}
	for _, tc := range bad {
		_, err := parseConfig([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%s) = %v, want %q", tc.json, err, tc.want)
		}
	}
}

// Errors name the file; the file's size is bounded; the example loads.
func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	path := write("clients.json", `{"balance": 0, `+twoClients+`}`)
	if _, err := loadConfigFile(path); err == nil || err.Error() != path+`: "balance" must be positive, got 0` {
		t.Errorf("balance 0: %v", err)
	}
	big := write("big.json", `{`+twoClients+`}`+strings.Repeat(" ", maxConfigBytes))
	if _, err := loadConfigFile(big); err == nil || err.Error() != big+": larger than 1048576 bytes" {
		t.Errorf("big file: %v", err)
	}
	if _, err := loadConfigFile(dir); err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("a folder: %v", err)
	}
	if _, err := loadConfigFile(filepath.Join(dir, "none.json")); err == nil || !strings.Contains(err.Error(), "-config: stat") {
		t.Errorf("missing: %v", err)
	}
	fc, err := loadConfigFile("clients.example.json")
	if err != nil || len(fc.Clients) != 3 || fc.Balance == nil || *fc.Balance != 10 {
		t.Errorf("clients.example.json: %+v, %v", fc, err)
	}
}

func TestCheckAddr(t *testing.T) {
	ok := map[string]string{
		"127.0.0.1:7001":   "127.0.0.1:7001",
		"127.0.0.1:07001":  "127.0.0.1:7001",
		"LocalHost:1":      "localhost:1",
		"[::1]:65535":      "[::1]:65535",
		"[0:0::1]:80":      "[::1]:80",
		"host.example:443": "host.example:443",
	}
	for addr, want := range ok {
		if got, err := checkAddr(addr); err != nil || got != want {
			t.Errorf("checkAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	bad := map[string]string{
		":7001":                         "names no host",
		"0.0.0.0:7001":                  "names no host",
		"[::]:7001":                     "names no host",
		"127.0.0.1:0":                   "is not a number from 1 to 65535",
		"127.0.0.1:65536":               "is not a number from 1 to 65535",
		"127.0.0.1:-1":                  "is not a number from 1 to 65535",
		"127.0.0.1:+80":                 "is not a number from 1 to 65535",
		"127.0.0.1:http":                "is not a number from 1 to 65535",
		"127.0.0.1:":                    "is not a number from 1 to 65535",
		"127.0.0.1":                     "is not host:port",
		"::1:7001":                      "is not host:port",
		strings.Repeat("h", 400) + ":1": "address longer than 300 bytes",
	}
	for addr, want := range bad {
		if _, err := checkAddr(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkAddr(%.20q) = %v, want %q", addr, err, want)
		}
	}
}

// -peers gets the same checks as a file, and its errors name -peers.
func TestParsePeers(t *testing.T) {
	bad := map[string]string{
		"1=127.0.0.1:7001,2=127.0.0.1:7001":       "-peers: clients 1 and 2 have the same address 127.0.0.1:7001",
		"1=localhost:7001,2=LOCALHOST:7001":       "-peers: clients 1 and 2 have the same address localhost:7001",
		"1=[::1]:7001,2=[0::1]:7001":              "-peers: clients 1 and 2 have the same address [::1]:7001",
		"1=127.0.0.1:7001,2=127.0.0.1:99999":      `-peers: client 2: address "127.0.0.1:99999": port "99999"`,
		"1=127.0.0.1:7001,2=:7002":                `-peers: client 2: address ":7002" names no host`,
		"1=127.0.0.1:7001,1=127.0.0.1:7002":       "-peers: client 1 listed twice",
		"1=127.0.0.1:7001":                        "-peers: need at least two clients",
		"1=127.0.0.1:7001,2":                      `-peers: "2" is not id=host:port`,
		"1=127.0.0.1:7001,.x=127.0.0.1:7002":      `-peers: client id .x cannot name a certificate`,
		"1=127.0.0.1:7001,2=127.0.0.1:7002,3=a:b": `-peers: client 3: address "a:b": port "b"`,
	}
	for in, want := range bad {
		if _, err := parsePeers(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parsePeers(%q) = %v, want %q", in, err, want)
		}
	}
	var many []string
	for i := range maxClients + 1 {
		many = append(many, strings.Repeat("x", i+1)+"=127.0.0.1:"+strconv.Itoa(1000+i))
	}
	if _, err := parsePeers(strings.Join(many, ",")); err == nil || !strings.Contains(err.Error(), "65 clients, at most 64") {
		t.Errorf("65 clients: %v", err)
	}
}

// resolve checks every setting before anything starts; the -balance flag
// wins over the file's.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "clients.json")
	if err := os.WriteFile(cfg, []byte(`{"balance": 5, `+twoClients+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) cliArgs {
		t.Helper()
		a, err := parseArgs(args)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	opts, ids, err := resolve(parse("-config", cfg))
	if err != nil || opts.balance != 5 || len(ids) != 2 || opts.maxBatch != 256 || opts.algorithm != lamportmutex.Lamport {
		t.Fatalf("file balance: %+v %v %v", opts, ids, err)
	}
	if opts, _, err = resolve(parse("-config", cfg, "-balance", "7")); err != nil || opts.balance != 7 {
		t.Fatalf("flag balance: %d %v", opts.balance, err)
	}
	if opts, _, err = resolve(parse("-config", cfg, "-balance", "10")); err != nil || opts.balance != 10 {
		t.Fatalf("flag balance at its default: %d %v", opts.balance, err)
	}
	opts, ids, err = resolve(parse("2", "-batch", "1", "-algorithm", "Ricart-Agrawala", "-memory", "-data", dir, "-delay", "3s"))
	if err != nil || opts.maxBatch != 1 || opts.algorithm != lamportmutex.RicartAgrawala || len(ids) != 1 || ids[0] != "2" ||
		!opts.memory || opts.dataDir != dir || opts.delay.String() != "3s" {
		t.Fatalf("one client: %+v %v %v", opts, ids, err)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"-balance", "0"}, "-balance must be positive, got 0"},
		{[]string{"-balance", "-4", "-config", cfg}, "-balance must be positive, got -4"},
		{[]string{"-balance", "3074457345618258603"}, "-balance 3074457345618258603 is too large: the 3 clients' balances must add up to at most 9223372036854775807"},
		{[]string{"-delay", "-1s"}, "-delay must be from 0 to 1h0m0s, got -1s"},
		{[]string{"-delay", "2h"}, "-delay must be from 0 to 1h0m0s, got 2h0m0s"},
		{[]string{"-batch", "0"}, "-batch must be from 1 to 4096, got 0"},
		{[]string{"-batch", "4097"}, "-batch must be from 1 to 4096, got 4097"},
		{[]string{"-algorithm", "ra"}, `-algorithm "ra": want lamport or ricart-agrawala`},
		{[]string{"-memory", "-data", dir}, "-data is not used with -memory when every client runs in this process"},
		{[]string{"-memory", "-data", dir, "-tls", dir, "1"}, "-data is not used with -memory and -tls"},
		{[]string{"-peers", "1=127.0.0.1:7001,2=127.0.0.1:7002", "-config", cfg}, "give -peers or -config, not both"},
		{[]string{"-peers", "1=127.0.0.1:7001,2=127.0.0.1:7002", "3"}, `unknown client "3" (clients: 1, 2)`},
		{[]string{"-peers", "1=127.0.0.1:7001,2=192.0.2.1:7002"}, "client 2 has address \"192.0.2.1:7002\", which is not on this machine's loopback"},
		{[]string{"-config", filepath.Join(dir, "none.json")}, "-config: stat"},
	}
	for _, tc := range bad {
		_, _, err := resolve(parse(tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("resolve(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	// A balance from the file that is too large blames the file.
	if err := os.WriteFile(cfg, []byte(`{"balance": 9223372036854775807, `+twoClients+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := resolve(parse("-config", cfg)); err == nil || !strings.HasPrefix(err.Error(), cfg+`: "balance" 9223372036854775807 is too large`) {
		t.Errorf("file balance too large: %v", err)
	}
}

// Clients on different algorithms are different clusters to the
// transport's handshake; Lamport's keeps the plain genesis hash.
func TestClusterName(t *testing.T) {
	var h ledger.Hash
	h[0] = 0xab
	if got := clusterName(h, lamportmutex.Lamport); got != h.String() {
		t.Errorf("lamport: %q", got)
	}
	if got := clusterName(h, lamportmutex.RicartAgrawala); got == h.String() || !strings.Contains(got, "ricart-agrawala") {
		t.Errorf("ricart-agrawala: %q", got)
	}
}
