package main

import (
	"math"
	"slices"
	"time"
)

// Section names, as accepted by -sections and used in the report.
const (
	secFloor       = "floor"
	secUncontended = "uncontended"
	secContended   = "contended"
	secHandoff     = "handoff"
	secCounts      = "counts"
	secLedger      = "ledger"
	secSweep       = "sweep"
	secVersus      = "versus"
	secMessages    = "messages"
)

// allSections lists the sections in the order they run and print.
var allSections = []string{secFloor, secUncontended, secContended, secHandoff, secCounts, secLedger, secSweep, secMessages, secVersus}

// defaultSections are the sections run unless -sections says otherwise:
// all but versus, whose curve up to a million transfers takes long.
var defaultSections = allSections[:len(allSections)-1]

// coreSections are the sections of -core: the figures of the mutex's
// performance targets.
var coreSections = []string{secFloor, secUncontended, secContended, secHandoff, secCounts, secMessages}

// Sample is one run of one measurement. Fields that do not apply are zero.
type Sample struct {
	// Ops is the number of operations timed (round trips, lock cycles,
	// committed transfers).
	Ops int64 `json:"ops"`
	// Seconds is the length of the timed window.
	Seconds float64 `json:"seconds"`
	// P50 and P99 are latency percentiles of one operation.
	P50 time.Duration `json:"p50_ns,omitempty"`
	P99 time.Duration `json:"p99_ns,omitempty"`
	// Rate is operations per second (lock cycles/s, committed transfers/s).
	Rate float64 `json:"per_sec,omitempty"`
	// Handoff is the window divided by the lock entries in it.
	Handoff time.Duration `json:"handoff_ns,omitempty"`
	// GrantGap is the mean time between consecutive grants at different
	// peers.
	GrantGap time.Duration `json:"grant_gap_ns,omitempty"`
	// WakeupsPerOp is goroutine wake-ups (runtime/trace) per operation, and
	// CreatedPerOp goroutines created per operation.
	WakeupsPerOp float64 `json:"wakeups_per_op,omitempty"`
	CreatedPerOp float64 `json:"goroutines_created_per_op,omitempty"`
	// WakeupsBy splits WakeupsPerOp by where the woken goroutine waited.
	WakeupsBy map[string]float64 `json:"wakeups_per_op_by_site,omitempty"`
	// SegsPerOp is TCP segments sent by this process's sockets per
	// operation, DataSegsPerOp those of them carrying data, and
	// HostSegsPerOp the machine's Tcp OutSegs per operation.
	SegsPerOp     float64 `json:"segs_per_op,omitempty"`
	DataSegsPerOp float64 `json:"data_segs_per_op,omitempty"`
	HostSegsPerOp float64 `json:"host_out_segs_per_op,omitempty"`
	// MsgsPerEntry is messages sent (all peers, Mutex.Stats) per lock entry
	// in the window; MsgsExact reports that it is exactly the algorithm's
	// count (Measurement.WantMsgs).
	MsgsPerEntry float64 `json:"msgs_per_entry,omitempty"`
	MsgsExact    bool    `json:"msgs_exact,omitempty"`
	// MsgsDetail breaks the counts down when MsgsExact is false.
	MsgsDetail string `json:"msgs_detail,omitempty"`
	// Committed is the number of blocks added at the slowest replica in the
	// window; Identical reports that every replica's chain was the same
	// and verified at the end.
	Committed int64 `json:"committed,omitempty"`
	Identical bool  `json:"identical,omitempty"`
	// BlocksPerEntry is committed blocks per mutex entry (the ledger's
	// group commit puts several in one entry).
	BlocksPerEntry float64 `json:"blocks_per_entry,omitempty"`
	// HeapPerNode is the heap in use that the run added, per ledger node
	// (see ledgerVersus).
	HeapPerNode int64 `json:"heap_per_node_bytes,omitempty"`
	// Restart is the time a ledger node took to open its store again and
	// be ready, after the run; RestartAlloc the bytes it allocated doing so.
	Restart      time.Duration `json:"restart_ns,omitempty"`
	RestartAlloc uint64        `json:"restart_alloc_bytes,omitempty"`
	// Retried is the raft floor's applies sent again to a new leader after
	// their node lost the lead, warm-up included.
	Retried int64 `json:"retried,omitempty"`
}

// Measurement is one thing measured, with every repeat and their median.
type Measurement struct {
	Key       string `json:"key"`
	Section   string `json:"section"`
	Label     string `json:"label"`
	Transport string `json:"transport,omitempty"`
	N         int    `json:"n,omitempty"`
	// Transfers is the count of transfers timed, in the versus section.
	Transfers int64 `json:"transfers,omitempty"`
	// Fsync is "on" or "off", in the versus section.
	Fsync string `json:"fsync,omitempty"`
	// Algorithm is the mutex's algorithm, where it is not Lamport's.
	Algorithm string `json:"algorithm,omitempty"`
	// WantMsgs is the messages per entry the algorithm needs, for lock
	// measurements: 3(N-1) for Lamport's, 2(N-1) for Ricart-Agrawala.
	WantMsgs float64  `json:"want_msgs_per_entry,omitempty"`
	Median   Sample   `json:"median"`
	Runs     []Sample `json:"runs"`
}

// MsgsOK reports whether every run sent exactly WantMsgs messages per
// entry.
func (m *Measurement) MsgsOK() bool {
	if m.WantMsgs == 0 {
		return true
	}
	for _, r := range m.Runs {
		if !r.MsgsExact || r.MsgsPerEntry != m.WantMsgs {
			return false
		}
	}
	return len(m.Runs) > 0
}

// summarize sets m.Median field by field from m.Runs. Booleans must hold
// in every run.
func (m *Measurement) summarize() {
	rs := m.Runs
	if len(rs) == 0 {
		return
	}
	med := func(f func(Sample) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	dur := func(f func(Sample) time.Duration) time.Duration {
		return time.Duration(math.Round(med(func(s Sample) float64 { return float64(f(s)) })))
	}
	all := func(f func(Sample) bool) bool {
		for _, r := range rs {
			if !f(r) {
				return false
			}
		}
		return true
	}
	m.Median = Sample{
		Ops:            int64(math.Round(med(func(s Sample) float64 { return float64(s.Ops) }))),
		Seconds:        med(func(s Sample) float64 { return s.Seconds }),
		P50:            dur(func(s Sample) time.Duration { return s.P50 }),
		P99:            dur(func(s Sample) time.Duration { return s.P99 }),
		Rate:           med(func(s Sample) float64 { return s.Rate }),
		Handoff:        dur(func(s Sample) time.Duration { return s.Handoff }),
		GrantGap:       dur(func(s Sample) time.Duration { return s.GrantGap }),
		MsgsPerEntry:   med(func(s Sample) float64 { return s.MsgsPerEntry }),
		MsgsExact:      all(func(s Sample) bool { return s.MsgsExact }),
		Committed:      int64(math.Round(med(func(s Sample) float64 { return float64(s.Committed) }))),
		Identical:      all(func(s Sample) bool { return s.Identical }),
		HeapPerNode:    int64(math.Round(med(func(s Sample) float64 { return float64(s.HeapPerNode) }))),
		Restart:        dur(func(s Sample) time.Duration { return s.Restart }),
		Retried:        int64(math.Round(med(func(s Sample) float64 { return float64(s.Retried) }))),
		RestartAlloc:   uint64(math.Round(med(func(s Sample) float64 { return float64(s.RestartAlloc) }))),
		BlocksPerEntry: med(func(s Sample) float64 { return s.BlocksPerEntry }),
		WakeupsPerOp:   med(func(s Sample) float64 { return s.WakeupsPerOp }),
		CreatedPerOp:   med(func(s Sample) float64 { return s.CreatedPerOp }),
		SegsPerOp:      med(func(s Sample) float64 { return s.SegsPerOp }),
		DataSegsPerOp:  med(func(s Sample) float64 { return s.DataSegsPerOp }),
		HostSegsPerOp:  med(func(s Sample) float64 { return s.HostSegsPerOp }),
	}
	sites := map[string]bool{}
	for _, r := range rs {
		for where := range r.WakeupsBy {
			sites[where] = true
		}
	}
	for where := range sites {
		if m.Median.WakeupsBy == nil {
			m.Median.WakeupsBy = map[string]float64{}
		}
		m.Median.WakeupsBy[where] = med(func(s Sample) float64 { return s.WakeupsBy[where] })
	}
}

// median returns the median of v (the mean of the middle two for an even
// count); v is reordered.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	k := len(v) / 2
	if len(v)%2 == 1 {
		return v[k]
	}
	return (v[k-1] + v[k]) / 2
}

// percentile returns the p-th quantile (0 < p <= 1) of sorted, by the
// nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latencySample summarizes per-operation latencies timed in a window.
func latencySample(lat []time.Duration, window time.Duration) Sample {
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	s := Sample{
		Ops:     int64(len(lat)),
		Seconds: window.Seconds(),
		P50:     percentile(sorted, 0.50),
		P99:     percentile(sorted, 0.99),
	}
	if window > 0 {
		s.Rate = float64(len(lat)) / window.Seconds()
	}
	return s
}
