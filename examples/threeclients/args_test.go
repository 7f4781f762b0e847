package main

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// Flags stand before or after the client; "--" ends them, but a flag's
// value "--" does not.
func TestParseArgs(t *testing.T) {
	tests := []struct {
		args []string
		want func(a *cliArgs) // from the defaults
	}{
		{nil, func(a *cliArgs) {}},
		{[]string{"1", "-peers", "1=a:1,2=b:2"}, func(a *cliArgs) { a.client, a.peers = "1", "1=a:1,2=b:2" }},
		{[]string{"-memory", "2", "-delay", "1s"}, func(a *cliArgs) { a.client, a.memory, a.delay = "2", true, time.Second }},
		{[]string{"-v", "3", "-trace", "-batch=1", "--algorithm", "ricart-agrawala"}, func(a *cliArgs) {
			a.client, a.verbose, a.trace, a.batch, a.algorithm = "3", true, true, 1, "ricart-agrawala"
		}},
		{[]string{"-balance", "20", "-data", "d"}, func(a *cliArgs) { a.balance, a.balanceSet, a.dataDir, a.dataSet = 20, true, "d", true }},
		{[]string{"-balance", "10", "1"}, func(a *cliArgs) { a.balanceSet, a.client = true, "1" }},
		{[]string{"-memory", "--", "1"}, func(a *cliArgs) { a.memory, a.client = true, "1" }},
		{[]string{"-data", "--", "1"}, func(a *cliArgs) { a.dataDir, a.dataSet, a.client = "--", true, "1" }},
		{[]string{"-data=--", "--", "1"}, func(a *cliArgs) { a.dataDir, a.dataSet, a.client = "--", true, "1" }},
	}
	for _, tc := range tests {
		got, err := parseArgs(tc.args)
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tc.args, err)
			continue
		}
		want := defaultArgs(t)
		tc.want(&want)
		if got != want {
			t.Errorf("parseArgs(%q) = %+v, want %+v", tc.args, got, want)
		}
	}
}

func defaultArgs(t *testing.T) cliArgs {
	t.Helper()
	a, err := parseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.balance != 10 || a.batch != 256 || a.algorithm != "lamport" || a.dataDir != "lamportledger-data" {
		t.Fatalf("defaults: %+v", a)
	}
	return a
}

func TestParseArgsErrors(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}, {"1", "-h"}, {"-memory", "2", "--help"}} {
		if _, err := parseArgs(args); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseArgs(%q) = %v, want flag.ErrHelp", args, err)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"1", "2"}, "one client at most, got 2: 1 2"},
		{[]string{"1", "-memory", "2"}, "one client at most, got 2: 1 2"},
		{[]string{"1", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-balance", "ten"}, `invalid value "ten" for flag -balance`},
		{[]string{"1", "-delay"}, "flag needs an argument: -delay"},
		{[]string{"-memory", "certs", "-x"}, "flag provided but not defined: -x"},
		{[]string{"-memory", "certs"}, `"certs" must come first`},
	}
	for _, tc := range tests {
		_, err := parseArgs(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseArgs(%q) = %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
}

// The usage names every flag, and the new ones say what they take.
func TestUsage(t *testing.T) {
	var b strings.Builder
	writeUsage(&b)
	for _, want := range []string{"usage: threeclients [flags] [client]", "threeclients certs", "before or after the client",
		"-batch", "1 to 4096", "-algorithm", "lamport or ricart-agrawala", "-delay", "wins over the -config file"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
