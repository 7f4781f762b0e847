package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Section headings of the text report.
const (
	headFloor     = "== Floor: loopback round trips (raw rows use no project code)"
	headUncont    = "== Uncontended: Lock+Unlock at one peer, the others idle"
	headCont      = "== Contended: every peer loops Lock/Unlock"
	headMsgs      = "== Messages per entry (Mutex.Stats, all peers; Lamport needs 3(N-1))"
	headLedger    = "== Ledger: committed transfers, 3 nodes over TCP loopback"
	headSweep     = "== Sweep over Chan"
	headRatios    = "== Ratios of medians"
	msgsMismatch  = "MISMATCH"
	targetMissed  = "MISSED"
	targetReached = "met"
)

// writeReport prints rep as tables.
func writeReport(w io.Writer, rep *Report) {
	p, m := rep.Params, rep.Machine
	fmt.Fprintln(w, "LamportLedger benchmark")
	fmt.Fprintf(w, "command:  %s\n", shellJoin(rep.Command))
	cpu := m.CPUModel
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(w, "machine:  %s, NumCPU %d, GOMAXPROCS %d, %s/%s, %s\n", cpu, m.NumCPU, m.GOMAXPROCS, m.GOOS, m.GOARCH, m.GoVersion)
	per := p.Duration.String()
	if p.Iters > 0 {
		per = fmt.Sprintf("%d operations", p.Iters)
	}
	fmt.Fprintf(w, "settings: %s per measurement after a warm-up of a fifth of that; every figure is the median of %d run(s)\n", per, p.Repeats)
	fmt.Fprintln(w)

	by := map[string][]*Measurement{}
	for _, ms := range rep.Measurements {
		by[ms.Section] = append(by[ms.Section], ms)
	}
	if ms := by[secFloor]; len(ms) > 0 {
		fmt.Fprintln(w, headFloor)
		t := table(w, "what", "p50", "p99", "round trips/s")
		for _, x := range ms {
			t.row(x.Label, dur(x.Median.P50), dur(x.Median.P99), rate(x.Median.Rate))
		}
		t.flush()
	}
	if ms := by[secUncontended]; len(ms) > 0 {
		fmt.Fprintln(w, headUncont)
		t := table(w, "transport", "N", "p50", "p99", "cycles/s", "msgs/entry")
		for _, x := range ms {
			t.row(x.Transport, strconv.Itoa(x.N), dur(x.Median.P50), dur(x.Median.P99), rate(x.Median.Rate), msgs(x))
		}
		t.flush()
	}
	if ms := by[secContended]; len(ms) > 0 {
		fmt.Fprintln(w, headCont)
		t := table(w, "transport", "N", "cycles/s", "hand-off (window/entries)", "hand-off (grant gap)", "msgs/entry")
		for _, x := range ms {
			t.row(x.Transport, strconv.Itoa(x.N), rate(x.Median.Rate), dur(x.Median.Handoff), dur(x.Median.GrantGap), msgs(x))
		}
		t.flush()
	}
	var lockMs []*Measurement
	for _, x := range rep.Measurements {
		if x.WantMsgs > 0 {
			lockMs = append(lockMs, x)
		}
	}
	if len(lockMs) > 0 {
		fmt.Fprintln(w, headMsgs)
		t := table(w, "measurement", "N", "msgs/entry", "want", "check")
		for _, x := range lockMs {
			check := "ok"
			if !x.MsgsOK() {
				check = msgsMismatch
			}
			t.row(x.Label, strconv.Itoa(x.N), fmt.Sprintf("%.3f", x.Median.MsgsPerEntry), fmt.Sprintf("%g", x.WantMsgs), check)
		}
		t.flush()
	}
	if ms := by[secLedger]; len(ms) > 0 {
		fmt.Fprintln(w, headLedger)
		fs := p.DirFS
		if fs == "" {
			fs = "unknown file system"
		}
		fmt.Fprintf(w, "%d submitters spread over the nodes; stores in a new folder under %s (%s), removed afterwards\n", p.Submitters, p.Dir, fs)
		t := table(w, "store", "committed/s", "transfer p50", "transfer p99", "committed", "blocks/lock entry", "chains")
		for _, x := range ms {
			chains := "identical"
			if !x.Median.Identical {
				chains = "DIFFER"
			}
			t.row(x.Label, rate(x.Median.Rate), dur(x.Median.P50), dur(x.Median.P99), strconv.FormatInt(x.Median.Committed, 10),
				fmt.Sprintf("%.1f", x.Median.BlocksPerEntry), chains)
		}
		t.flush()
	}
	if ms := by[secSweep]; len(ms) > 0 {
		fmt.Fprintln(w, headSweep)
		t := table(w, "N", "lock p50", "lock p99", "cycles/s", "hand-off", "msgs/entry")
		for _, n := range p.SweepN {
			var u, c *Measurement
			for _, x := range ms {
				switch x.Key {
				case keySweepLock(n):
					u = x
				case keySweepCycles(n):
					c = x
				}
			}
			if u == nil || c == nil {
				continue
			}
			mp := msgs(u)
			if !c.MsgsOK() {
				mp = msgs(c)
			}
			t.row(strconv.Itoa(n), dur(u.Median.P50), dur(u.Median.P99), rate(c.Median.Rate), dur(c.Median.Handoff), mp)
		}
		t.flush()
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, headRatios)
		t := table(w, "ratio", "value", "target", "")
		for _, r := range rep.Ratios {
			target, verdict := "-", ""
			if r.Target > 0 {
				target = fmt.Sprintf("<= %.1fx", r.Target)
				verdict = targetMissed
				if r.Met {
					verdict = targetReached
				}
			}
			t.row(r.Name, fmt.Sprintf("%.2fx", r.Value), target, verdict)
		}
		t.flush()
	}
}

// tab is a table being written.
type tab struct {
	w *tabwriter.Writer
	o io.Writer
}

func table(w io.Writer, head ...string) *tab {
	t := &tab{w: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), o: w}
	t.row(head...)
	return t
}

func (t *tab) row(cells ...string) { fmt.Fprintln(t.w, strings.Join(cells, "\t")) }

func (t *tab) flush() {
	_ = t.w.Flush()
	fmt.Fprintln(t.o)
}

// dur formats a latency in µs (or ms from 10 ms on); zero is "-".
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

func rate(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r)
}

// msgs formats a measurement's messages per entry, flagged if it is not
// 3(N-1) in every run.
func msgs(m *Measurement) string {
	s := fmt.Sprintf("%.3f", m.Median.MsgsPerEntry)
	if !m.MsgsOK() {
		s += " " + msgsMismatch
	}
	return s
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
