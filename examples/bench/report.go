package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
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
	headHandoff   = "== Hand-off: from the holder's Unlock to the grant of a peer already waiting (queued, every reply in)"
	headCounts    = "== Wake-ups and TCP segments per cycle"
	headMsgs      = "== Messages per entry (Mutex.Stats, all peers; Lamport needs 3(N-1))"
	headMsgsAlgs  = "== Messages per entry by algorithm, over Chan (exact in every run of every size?)"
	headLedger    = "== Ledger: committed transfers, 3 nodes over TCP loopback"
	headSweep     = "== Sweep over Chan"
	headVersus    = "== Ledger beside hashicorp/raft: 3 nodes over TCP loopback, in the same run"
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
	if ms := by[secHandoff]; len(ms) > 0 {
		fmt.Fprintln(w, headHandoff)
		t := table(w, "transport", "N", "p50", "p99", "msgs/entry")
		for _, x := range ms {
			t.row(x.Transport, strconv.Itoa(x.N), dur(x.Median.P50), dur(x.Median.P99), msgs(x))
		}
		t.flush()
	}
	if ms := by[secCounts]; len(ms) > 0 {
		writeCounts(w, p.Cycles, ms)
	}
	var lockMs []*Measurement
	for _, x := range rep.Measurements {
		if x.WantMsgs > 0 && x.Section != secMessages {
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
	if ms := by[secMessages]; len(ms) > 0 {
		writeMessages(w, ms)
	}
	if ms := by[secVersus]; len(ms) > 0 {
		writeVersus(w, p, ms)
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, headRatios)
		t := table(w, "ratio", "value", "target", "")
		for _, r := range rep.Ratios {
			target, verdict := "-", ""
			if r.Target > 0 {
				target = fmt.Sprintf("<= %.1fx", r.Target)
				if r.AtLeast {
					target = fmt.Sprintf(">= %.1fx", r.Target)
				}
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

// writeVersus prints the versus section: per fsync setting and count of
// transfers, the ledger's rate beside raft's, and the ledger's heap per
// node and restart.
func writeVersus(w io.Writer, p Params, ms []*Measurement) {
	fmt.Fprintln(w, headVersus)
	fmt.Fprintf(w, "%d submitters: the ledger's spread over its nodes, raft's all calling Apply on the leader. Each point times that many\n", p.Submitters)
	fmt.Fprintln(w, "transfers after a warm-up of 1% (at least one per submitter). Raft: DefaultConfig, logging off, snapshots off;")
	fmt.Fprintln(w, "fsync off is raft's InmemStore, fsync on raft-boltdb (an fsync per batch of entries stored).")
	fmt.Fprintln(w, "heap/node: growth of HeapInuse after a full GC, from before the ledger started to after the transfers, / 3 nodes")
	fmt.Fprintln(w, "(all in this process). restart: one node, after the group closed, from opening its FileStore to NewNode returning.")
	fmt.Fprintln(w, "raft retries: applies sent again to a new leader after their node lost the lead (median of the runs).")
	by := map[string]*Measurement{}
	for _, x := range ms {
		by[x.Key] = x
	}
	t := table(w, "fsync", "transfers", "ledger/s", "raft/s", "ledger/raft", "target", "heap/node", "<= 64 MiB", "restart", "restart alloc", "<= 0.5s", "chains", "raft retries")
	for _, fsync := range p.Fsync {
		target := versusNoSyncTarget
		if fsync == fsyncOn {
			target = versusSyncTarget
		}
		for _, n := range p.Transfers {
			l, r := by[keyVersus(sysLedger, fsync, n)], by[keyVersus(sysRaft, fsync, n)]
			if l == nil || r == nil {
				continue
			}
			ratio, ratioOK := "-", ""
			if l.Median.Rate > 0 && r.Median.Rate > 0 {
				v := l.Median.Rate / r.Median.Rate
				ratio, ratioOK = fmt.Sprintf("%.2fx", v), verdict(v >= target)
			}
			chains := "identical"
			if !l.Median.Identical || !r.Median.Identical {
				chains = "DIFFER"
			}
			t.row(fsync, strconv.FormatInt(n, 10), rate(l.Median.Rate), rate(r.Median.Rate), ratio,
				fmt.Sprintf(">= %.0fx %s", target, ratioOK),
				mib(l.Median.HeapPerNode), verdict(l.Median.HeapPerNode <= versusHeapTarget),
				dur(l.Median.Restart), mib(int64(l.Median.RestartAlloc)), verdict(l.Median.Restart <= versusRestartTarget), chains,
				strconv.FormatInt(r.Median.Retried, 10))
		}
	}
	t.flush()
}

// verdict is targetReached if ok, else targetMissed.
func verdict(ok bool) string {
	if ok {
		return targetReached
	}
	return targetMissed
}

// mib formats bytes in MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// wakeupsTarget is the most goroutine wake-ups an uncontended cycle of the
// mutex should cost.
const wakeupsTarget = 6

// writeCounts prints the counts section.
func writeCounts(w io.Writer, cycles int, ms []*Measurement) {
	fmt.Fprintln(w, headCounts)
	fmt.Fprintf(w, "%d cycles per count, after a warm-up of a fifth of that. %s.\n", cycles, wakeupsMethod)
	fmt.Fprintf(w, "Segments: %s.\n", segmentsMethod)
	t := table(w, "what", "wake-ups", "created", "segments", "data segs", "host OutSegs", "msgs/entry", fmt.Sprintf("wake-ups <= %d", wakeupsTarget))
	for _, x := range ms {
		m := "-"
		verdict := ""
		if x.WantMsgs > 0 {
			m = msgs(x)
			verdict = targetMissed
			if x.Median.WakeupsPerOp <= wakeupsTarget {
				verdict = targetReached
			}
		}
		t.row(x.Label, count(x.Median.WakeupsPerOp), count(x.Median.CreatedPerOp), count(x.Median.SegsPerOp),
			count(x.Median.DataSegsPerOp), count(x.Median.HostSegsPerOp), m, verdict)
	}
	t.flush()
	fmt.Fprintln(w, "Wake-ups per cycle by where the woken goroutine waited (its first function outside the standard library, or its start):")
	t = table(w, "what", "waited in", "wake-ups")
	for _, x := range ms {
		for _, site := range bySite(x.Median.WakeupsBy) {
			t.row(x.Label, site.where, count(site.n))
		}
	}
	t.flush()
}

// modulePrefix is left out of the function names of the report.
const modulePrefix = "github.com/lamportledger/lamportledger/"

// siteCount is wake-ups per cycle at one place.
type siteCount struct {
	where string
	n     float64
}

// bySite returns the places of by, most wake-ups first; places with fewer
// than 0.05 a cycle are added up as "other".
func bySite(by map[string]float64) []siteCount {
	var out []siteCount
	var other float64
	for where, n := range by {
		if n < 0.05 {
			other += n
			continue
		}
		out = append(out, siteCount{strings.TrimPrefix(where, modulePrefix), n})
	}
	slices.SortFunc(out, func(a, b siteCount) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return strings.Compare(a.where, b.where)
	})
	if other > 0 {
		out = append(out, siteCount{"other", other})
	}
	return out
}

// writeMessages prints the messages section: one row per algorithm and
// kind of load, and one per size that missed.
func writeMessages(w io.Writer, ms []*Measurement) {
	fmt.Fprintln(w, headMsgsAlgs)
	type row struct{ alg, how string }
	var order []row
	sizes := map[row][]int{}
	missed := map[row][]string{}
	want := map[row]string{}
	for _, x := range ms {
		how := "uncontended"
		if strings.HasSuffix(x.Key, "/contended") {
			how = "contended"
		}
		r := row{x.Algorithm, how}
		if _, ok := sizes[r]; !ok {
			order = append(order, r)
			want[r] = "3(N-1)"
			if x.WantMsgs == float64(2*(x.N-1)) {
				want[r] = "2(N-1)"
			}
		}
		sizes[r] = append(sizes[r], x.N)
		if !x.MsgsOK() {
			missed[r] = append(missed[r], fmt.Sprintf("N=%d: %s", x.N, msgs(x)))
		}
	}
	t := table(w, "algorithm", "load", "want", "sizes", "check")
	for _, r := range order {
		check := "ok"
		if len(missed[r]) > 0 {
			check = msgsMismatch + " " + strings.Join(missed[r], "; ")
		}
		t.row(r.alg, r.how, want[r], sizeList(sizes[r]), check)
	}
	t.flush()
}

// sizeList formats sizes, a run of consecutive ones as a-b.
func sizeList(ns []int) string {
	var parts []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j > i+1 {
			parts = append(parts, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		} else {
			for k := i; k <= j; k++ {
				parts = append(parts, strconv.Itoa(ns[k]))
			}
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// count formats a per-operation count; zero is "-".
func count(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
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
