package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lamportledger/lamportledger/ledger"
)

// cliArgs are the command line as given: flags, and the client to run.
// resolve (config.go) checks them and turns them into options.
type cliArgs struct {
	peers     string
	config    string
	balance   int64
	delay     time.Duration
	trace     bool
	dataDir   string
	memory    bool
	tlsDir    string
	insecure  bool
	verbose   bool
	batch     int
	algorithm string
	http      string
	client    string // "" runs every client in this process

	balanceSet, dataSet bool // given on the command line
}

// shortUsage follows every command line error.
const shortUsage = "usage: threeclients [flags] [client]   (\"threeclients -h\" lists the flags)"

const usageHead = `usage: threeclients [flags] [client]
       threeclients certs -dir DIR [-peers ...|-config FILE] [-force]

With a client number, runs that client; without, runs every client in one
process. Flags may stand before or after the client number.

flags:`

// newFlagSet defines the flags into a. It prints nothing: parseArgs
// reports errors, writeUsage the help.
func newFlagSet(a *cliArgs) *flag.FlagSet {
	fs := flag.NewFlagSet("threeclients", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&a.peers, "peers", "", "clients and addresses, e.g. 1=host:port,2=host:port,3=host:port (default 127.0.0.1:7001-7003)")
	fs.StringVar(&a.config, "config", "", "JSON file with the clients and addresses, and optionally the balance (see clients.example.json)")
	fs.Int64Var(&a.balance, "balance", ledger.DefaultInitialBalance, "every client's initial balance; given, it wins over the -config file's")
	fs.DurationVar(&a.delay, "delay", 0, "delay every message sent by this long (e.g. 3s) to watch concurrency")
	fs.BoolVar(&a.trace, "trace", false, "print every message sent and received and every clock change")
	fs.StringVar(&a.dataDir, "data", "lamportledger-data", "folder for the ledger files and incarnation counters (one each per client) and, without -tls, the certificates made on first start")
	fs.BoolVar(&a.memory, "memory", false, "keep the ledger in memory only (with one client and no -tls, -data still holds the certificates)")
	fs.StringVar(&a.tlsDir, "tls", "", "certificates folder made by \"threeclients certs\": mutual TLS with its certificates, and blocks signed with its keys")
	fs.BoolVar(&a.insecure, "insecure", false, "no TLS: peers talk in plaintext, unauthenticated (blocks are still signed); allows peers that are not on loopback without -tls")
	fs.BoolVar(&a.verbose, "v", false, "log every connection event to stderr (refusals and broken connections are always logged)")
	fs.IntVar(&a.batch, "batch", ledger.DefaultMaxBatch, fmt.Sprintf("most transfers committed in one entry of the mutex, 1 to %d; 1 takes the mutex once per transfer, as in the course", ledger.MaxBatch))
	fs.StringVar(&a.algorithm, "algorithm", "lamport", "mutual exclusion algorithm: lamport or ricart-agrawala (every client must use the same)")
	fs.StringVar(&a.http, "http", "", "serve a live page of the clients (space-time diagram, queues, chains, a command form), /metrics and /debug/pprof on this address, e.g. 127.0.0.1:8080")
	return fs
}

// writeUsage writes the full help.
func writeUsage(w io.Writer) {
	var a cliArgs
	fs := newFlagSet(&a)
	fs.SetOutput(w)
	fmt.Fprintln(w, usageHead)
	fs.PrintDefaults()
}

// parseArgs parses the command line. Flags may stand anywhere; "--" ends
// them. It returns flag.ErrHelp for -h, -help and --help, and otherwise
// an error that is one line, fit to print above shortUsage.
func parseArgs(args []string) (cliArgs, error) {
	var a cliArgs
	fs := newFlagSet(&a)
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return cliArgs{}, err
		}
		rest := fs.Args()
		if endedByDashes(fs, args[:len(args)-len(rest)]) {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case slices.Contains(pos, "certs"):
		return cliArgs{}, errors.New(`"certs" must come first, as in "threeclients certs -dir DIR"`)
	case len(pos) > 1:
		return cliArgs{}, fmt.Errorf("one client at most, got %d: %s", len(pos), quoteAll(pos))
	case len(pos) == 1:
		a.client = pos[0]
	}
	fs.Visit(func(f *flag.Flag) {
		a.balanceSet = a.balanceSet || f.Name == "balance"
		a.dataSet = a.dataSet || f.Name == "data"
	})
	return a, nil
}

// endedByDashes reports whether the flags in used, which fs.Parse
// consumed, end with the "--" that ends the flags (and not with a flag's
// value "--").
func endedByDashes(fs *flag.FlagSet, used []string) bool {
	n := len(used)
	if n == 0 || used[n-1] != "--" {
		return false
	}
	if n == 1 {
		return true
	}
	prev := used[n-2]
	name := strings.TrimLeft(prev, "-")
	if !strings.HasPrefix(prev, "-") || name == "" || strings.Contains(name, "=") {
		return true
	}
	f := fs.Lookup(name)
	if f == nil {
		return true
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = quoteID(v)
	}
	return strings.Join(q, " ")
}
