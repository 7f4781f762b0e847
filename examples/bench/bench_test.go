package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestQuickRun runs the whole program in smoke mode and checks the report
// has every section, that every lock measurement sent exactly 3(N-1)
// messages per entry, and that the ledger's replicas agreed. It asserts no
// timings.
func TestQuickRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errb bytes.Buffer
	if code := run([]string{"-quick", "-sections", "all", "-d", "20ms", "-submitters", "12", "-dir", t.TempDir(), "-json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s\nstdout:\n%s", code, errb.String(), out.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out.String())
	}
	if rep.Machine.NumCPU < 1 || rep.Machine.GoVersion == "" || len(rep.Command) == 0 {
		t.Errorf("machine or command missing: %+v %q", rep.Machine, rep.Command)
	}
	sections := map[string]int{}
	versus := map[string]bool{}
	lockNs := map[int]bool{}
	algs := map[string]bool{}
	for _, m := range rep.Measurements {
		sections[m.Section]++
		if len(m.Runs) != rep.Params.Repeats {
			t.Errorf("%s: %d runs, want %d", m.Key, len(m.Runs), rep.Params.Repeats)
		}
		if m.Median.Ops <= 0 && m.Key != keyRawOneWay {
			t.Errorf("%s: no operations measured", m.Key)
		}
		if m.Section == secUncontended || m.Section == secContended || m.Section == secSweep || m.Section == secHandoff {
			if m.WantMsgs != float64(3*(m.N-1)) {
				t.Errorf("%s: want_msgs_per_entry %g, want 3(N-1) = %d", m.Key, m.WantMsgs, 3*(m.N-1))
			}
			for i, r := range m.Runs {
				if r.MsgsPerEntry != float64(3*(m.N-1)) || !r.MsgsExact {
					t.Errorf("%s run %d: %g messages per entry (exact %v), want %d", m.Key, i, r.MsgsPerEntry, r.MsgsExact, 3*(m.N-1))
				}
			}
			lockNs[m.N] = true
		}
		if m.Section == secMessages {
			want := 3 * (m.N - 1)
			if m.Algorithm == "ricart-agrawala" {
				want = 2 * (m.N - 1)
			}
			algs[m.Algorithm] = true
			if m.WantMsgs != float64(want) || !m.MsgsOK() {
				t.Errorf("%s: want_msgs_per_entry %g (want %d), runs %+v", m.Key, m.WantMsgs, want, m.Runs)
			}
		}
		if m.Section == secCounts {
			if m.Median.WakeupsPerOp <= 0 {
				t.Errorf("%s: no wake-ups counted", m.Key)
			}
			if runtime.GOOS == "linux" && (m.Median.SegsPerOp <= 0 || m.Median.DataSegsPerOp <= 0) {
				t.Errorf("%s: no segments counted: %+v", m.Key, m.Median)
			}
		}
		if (m.Section == secLedger || m.Section == secVersus) && (!m.Median.Identical || m.Median.Committed <= 0) {
			t.Errorf("%s: committed %d, identical chains %v", m.Key, m.Median.Committed, m.Median.Identical)
		}
		if m.Section == secVersus {
			versus[m.Key] = true
			if m.Median.Committed != m.Transfers {
				t.Errorf("%s: committed %d in the window, want %d", m.Key, m.Median.Committed, m.Transfers)
			}
			isLedger := strings.HasPrefix(m.Key, "versus/"+sysLedger+"/")
			// The heap per node may be 0 this early: the heap can shrink.
			if isLedger != (m.Median.Restart > 0 && m.Median.RestartAlloc > 0) || (!isLedger && m.Median.HeapPerNode != 0) {
				t.Errorf("%s: heap per node %d, restart %v (%d bytes): want a restart for the ledger, and neither for raft",
					m.Key, m.Median.HeapPerNode, m.Median.Restart, m.Median.RestartAlloc)
			}
		}
	}
	for _, s := range allSections {
		if sections[s] == 0 {
			t.Errorf("section %q missing from the report", s)
		}
	}
	if !lockNs[3] || !lockNs[4] {
		t.Errorf("lock measurements for N=3 and N=4 expected, got %v", lockNs)
	}
	if !algs["lamport"] || !algs["ricart-agrawala"] {
		t.Errorf("messages of both algorithms expected, got %v", algs)
	}
	for _, sys := range []string{sysLedger, sysRaft} {
		for _, fsync := range []string{fsyncOff, fsyncOn} {
			if k := keyVersus(sys, fsync, 300); !versus[k] {
				t.Errorf("versus measurement %s missing", k)
			}
		}
	}
	var targets, atLeast int
	for _, r := range rep.Ratios {
		if r.Target > 0 {
			targets++
		}
		if r.AtLeast {
			atLeast++
		}
		if r.Value <= 0 {
			t.Errorf("ratio %q = %g", r.Name, r.Value)
		}
	}
	if targets != 4 || atLeast != 2 {
		t.Errorf("%d ratios with a target (%d at least), want 4 (2 ledger/raft): %+v", targets, atLeast, rep.Ratios)
	}

	// The same report as tables.
	var tables bytes.Buffer
	writeReport(&tables, &rep)
	text := tables.String()
	for _, h := range []string{"command:", "machine:", headFloor, headUncont, headCont, headHandoff, headCounts, headMsgs,
		headLedger, headSweep, headMsgsAlgs, headVersus, headRatios} {
		if !strings.Contains(text, h) {
			t.Errorf("table output lacks %q", h)
		}
	}
	if strings.Contains(text, msgsMismatch) {
		t.Errorf("table output flags a mismatch:\n%s", text)
	}
	t.Log("\n" + text)
}

// TestBadFlags checks that bad settings are refused before anything runs.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-r", "0"},
		{"-n", "1"},
		{"-sections", "floor,bogus"},
		{"-transports", "udp"},
		{"-d", "0"},
		{"-submitters", "0"},
		{"-cycles", "0"},
		{"-msgs-n", "3-"},
		{"-msgs-n", "5-3"},
		{"-msgs-n", "1"},
		{"-msgs-n", "3-9999"},
		{"-transfers", "0"},
		{"-transfers", "10x"},
		{"-transfers", "200M"},
		{"-fsync", "maybe"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run %q: exit %d, want 2; stderr %s", args, code, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("run %q printed a report:\n%s", args, out.String())
		}
	}
}

// TestMedianAndPercentile pins the statistics the report is built on.
func TestMedianAndPercentile(t *testing.T) {
	if got := median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median odd = %g, want 3", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %g, want 2.5", got)
	}
	if got := median(nil); got != 0 {
		t.Errorf("median empty = %g", got)
	}
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i))
	}
	s := latencySample(lat, time.Second)
	if s.P50 != 50 || s.P99 != 99 || s.Ops != 100 || s.Rate != 100 {
		t.Errorf("p50 %d p99 %d, want 50 and 99", s.P50, s.P99)
	}
	m := Measurement{WantMsgs: 6, Runs: []Sample{{MsgsPerEntry: 6, MsgsExact: true}, {MsgsPerEntry: 6, MsgsExact: false}}}
	if m.MsgsOK() {
		t.Error("MsgsOK true although one run was not exact")
	}
}
