// Command bench measures LamportLedger against the floor set by the
// machine's own loopback network, all in one run so that the ratios mean
// something:
//
//   - floor: raw net.Conn ping-pong and fan-out-and-echo round trips (no
//     project code), the one-way latency they imply, and the round trip
//     through transport.TCP and transport.ChanNetwork;
//   - uncontended: Lock+Unlock latency at one peer of three, over Chan and
//     TCP, and its ratio to the raw fan-out-and-echo (target <= 1.3x);
//   - contended: every peer loops Lock/Unlock: lock cycles/s and hand-off
//     time;
//   - handoff: the latency from the holder's Unlock to the grant of a peer
//     already waiting, and its ratio to the raw one-way latency, timed
//     the same way (target <= 2x);
//   - counts: goroutine wake-ups (runtime/trace) and TCP segments per
//     uncontended Lock+Unlock over TCP and per raw fan-out-and-echo
//     (target <= 6 wake-ups);
//   - messages per entry from Mutex.Stats, which must be 3(N-1) for
//     Lamport's algorithm in every lock measurement, and, in the messages
//     section, 3(N-1) and 2(N-1) for Ricart-Agrawala, N = 3 to 32;
//   - ledger: committed transfers/s and transfer latency for three nodes
//     over TCP loopback with many concurrent submitters, with the file
//     store's fsync off and on;
//   - sweep: lock latency, cycles/s and messages per entry over Chan for
//     several group sizes;
//   - versus (only when asked for): the ledger beside hashicorp/raft, both
//     three nodes over TCP loopback with the same submitters, fsync off
//     (raft with its InmemStore) and on (raft-boltdb), over a curve of
//     transfer counts: committed transfers/s and their ratio, and the
//     ledger's heap per node and the restart of a node on its store.
//
// Every measurement is repeated (-r) and the median is reported. Run it
// from the module root:
//
//	go run ./examples/bench                 # full run, about two minutes
//	go run ./examples/bench -quick          # smoke run, a few seconds
//	go run ./examples/bench -core           # the mutex's targets only, about two minutes
//	go run ./examples/bench -sections versus -fsync off -transfers 10k,100k,1M
//	go run ./examples/bench -json > out.json
//	go run ./examples/bench -sections uncontended -transports tcp -cpuprofile lock.prof
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Params are the settings of a run, as reported.
type Params struct {
	Duration   time.Duration `json:"duration_ns"`
	Iters      int64         `json:"iters,omitempty"`
	Repeats    int           `json:"repeats"`
	Sections   []string      `json:"sections"`
	Transports []string      `json:"transports"`
	SweepN     []int         `json:"sweep_n"`
	Cycles     int           `json:"cycles"`
	MsgsN      []int         `json:"msgs_n"`
	Submitters int           `json:"submitters"`
	Transfers  []int64       `json:"transfers,omitempty"`
	Fsync      []string      `json:"fsync,omitempty"`
	Dir        string        `json:"dir"`
	DirFS      string        `json:"dir_fs,omitempty"`
	Quick      bool          `json:"quick,omitempty"`
	Core       bool          `json:"core,omitempty"`
}

// Report is everything a run measured; -json prints it.
type Report struct {
	Command      []string       `json:"command"`
	Machine      Machine        `json:"machine"`
	Params       Params         `json:"params"`
	Measurements []*Measurement `json:"measurements"`
	Ratios       []Ratio        `json:"ratios"`
}

func run(args []string, stdout, stderr io.Writer) int {
	p, cpuprofile, asJSON, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	rep := &Report{Command: commandLine(args), Machine: thisMachine(), Params: p}
	if err := measure(rep, stderr); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	rep.Ratios = ratios(rep)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	} else {
		writeReport(stdout, rep)
	}
	for _, m := range rep.Measurements {
		if !m.MsgsOK() {
			fmt.Fprintf(stderr, "bench: %s: %.3f messages per entry, want %g\n", m.Label, m.Median.MsgsPerEntry, m.WantMsgs)
			for i, r := range m.Runs {
				if r.MsgsDetail != "" {
					fmt.Fprintf(stderr, "bench:   run %d: %s\n", i+1, r.MsgsDetail)
				}
			}
			return 1
		}
	}
	return 0
}

// commandLine returns the command as typed, as far as it can be known.
func commandLine(args []string) []string {
	prog := []string{os.Args[0]}
	if strings.Contains(os.Args[0], "go-build") { // built by go run
		prog = []string{"go", "run", "./examples/bench"}
	}
	return append(prog, args...)
}

func parseFlags(args []string, stderr io.Writer) (p Params, cpuprofile string, asJSON bool, err error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&p.Duration, "d", time.Second, "timed length of each measurement, each repeat (a fifth more is warm-up)")
	fs.Int64Var(&p.Iters, "iters", 0, "if > 0, operations per measurement instead of -d (lock cycles shared by all peers; transfers shared by all submitters)")
	fs.IntVar(&p.Repeats, "r", 3, "repeats of every measurement; the median is reported")
	sections := fs.String("sections", strings.Join(defaultSections, ","), "sections to run, comma-separated, or all: "+strings.Join(allSections, ","))
	transports := fs.String("transports", overChan+","+overTCP, "transports of the uncontended and contended sections: chan,tcp")
	ns := fs.String("n", "3,4,8,16,32", "group sizes of the sweep over Chan")
	msgsN := fs.String("msgs-n", "3-32", "group sizes of the messages section: a list, with ranges such as 3-32")
	fs.IntVar(&p.Cycles, "cycles", 2000, "lock cycles (and raw round trips) of each count of wake-ups and of segments")
	fs.IntVar(&p.Submitters, "submitters", 64, "concurrent Transfer callers of the ledger section, spread over its 3 nodes")
	transfers := fs.String("transfers", "10k,100k,1M", "transfers timed at each point of the versus section's curve (suffixes k and M)")
	fsync := fs.String("fsync", fsyncOff+","+fsyncOn, "stores of the versus section: off (ledger FileStore NoSync vs raft InmemStore), on (FileStore vs raft-boltdb)")
	fs.StringVar(&p.Dir, "dir", "", "folder in which the ledger section makes its temporary stores (default $TMPDIR, or /tmp)")
	fs.BoolVar(&p.Quick, "quick", false, "smoke run: -d 50ms -r 1 -n 3,4 -msgs-n 3,4 -cycles 100 unless given")
	fs.BoolVar(&p.Core, "core", false, "only the mutex's targets: -sections "+strings.Join(coreSections, ",")+" -transports tcp unless given")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of tables")
	fs.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return p, "", false, err
	}
	if fs.NArg() != 0 {
		return p, "", false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if p.Quick {
		if !set["d"] {
			p.Duration = 50 * time.Millisecond
		}
		if !set["r"] {
			p.Repeats = 1
		}
		if !set["n"] {
			*ns = "3,4"
		}
		if !set["msgs-n"] {
			*msgsN = "3,4"
		}
		if !set["cycles"] {
			p.Cycles = 100
		}
		if !set["transfers"] {
			*transfers = "300"
		}
	}
	if p.Core {
		if !set["sections"] {
			*sections = strings.Join(coreSections, ",")
		}
		if !set["transports"] {
			*transports = overTCP
		}
	}
	if p.Dir == "" {
		p.Dir = os.TempDir()
	}
	p.DirFS = fsType(p.Dir)
	if p.Sections, err = parseList(*sections, allSections); err != nil {
		return p, "", false, fmt.Errorf("-sections: %w", err)
	}
	if p.Transports, err = parseList(*transports, []string{overChan, overTCP}); err != nil {
		return p, "", false, fmt.Errorf("-transports: %w", err)
	}
	if p.Transfers, err = parseCounts(*transfers); err != nil {
		return p, "", false, fmt.Errorf("-transfers: %w", err)
	}
	if p.Fsync, err = parseList(*fsync, []string{fsyncOff, fsyncOn}); err != nil {
		return p, "", false, fmt.Errorf("-fsync: %w", err)
	}
	if p.SweepN, err = parseSizes(*ns); err != nil {
		return p, "", false, fmt.Errorf("-n: %w", err)
	}
	if p.MsgsN, err = parseSizes(*msgsN); err != nil {
		return p, "", false, fmt.Errorf("-msgs-n: %w", err)
	}
	switch {
	case p.Repeats < 1:
		return p, "", false, fmt.Errorf("-r must be >= 1")
	case p.Iters < 0 || (p.Iters == 0 && p.Duration <= 0):
		return p, "", false, fmt.Errorf("need -d > 0 or -iters > 0")
	case p.Submitters < 1:
		return p, "", false, fmt.Errorf("-submitters must be >= 1")
	case p.Cycles < 1:
		return p, "", false, fmt.Errorf("-cycles must be >= 1")
	}
	return p, cpuprofile, asJSON, nil
}

// maxGroup bounds the group sizes a run accepts.
const maxGroup = 256

// parseSizes parses a comma-separated list of group sizes, where a-b
// stands for every size from a to b.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, errA := strconv.Atoi(lo)
		b, errB := a, error(nil)
		if isRange {
			b, errB = strconv.Atoi(hi)
		}
		if errA != nil || errB != nil || a < 2 || b < a || b > maxGroup {
			return nil, fmt.Errorf("%q is not a group size (or range of sizes) from 2 to %d", f, maxGroup)
		}
		for n := a; n <= b; n++ {
			out = append(out, n)
		}
	}
	return out, nil
}

// parseList splits a comma-separated list, keeping known's order; "all"
// means every one.
func parseList(s string, known []string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return slices.Clone(known), nil
	}
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("unknown %q (known: %s)", f, strings.Join(known, ","))
		}
		want[f] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}
