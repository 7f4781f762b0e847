package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// lockN is the group size of the floor's fan-out and of the uncontended,
// contended and ledger sections.
const lockN = 3

// Keys of the measurements that ratios refer to.
const (
	keyRawRTT         = "floor/raw-rtt"
	keyRawFanout      = "floor/raw-fanout"
	keyRawOneWay      = "floor/raw-oneway"
	keyRawOneWayTimed = "floor/raw-oneway-timed"
	keyRawCounts      = "counts/raw-fanout"
	keyTCPRTT         = "floor/tcp-rtt"
	keyChanRTT        = "floor/chan-rtt"
)

func keyUncontended(kind string, n int) string { return fmt.Sprintf("uncontended/%s/%d", kind, n) }
func keyContended(kind string, n int) string   { return fmt.Sprintf("contended/%s/%d", kind, n) }
func keyHandoff(kind string, n int) string     { return fmt.Sprintf("handoff/%s/%d", kind, n) }
func keyCounts(kind string, n int) string      { return fmt.Sprintf("counts/%s/%d", kind, n) }
func keySweepLock(n int) string                { return fmt.Sprintf("sweep/uncontended/%d", n) }
func keySweepCycles(n int) string              { return fmt.Sprintf("sweep/contended/%d", n) }
func keyLedger(durable bool) string {
	if durable {
		return "ledger/sync"
	}
	return "ledger/nosync"
}

// recorder collects the runs of every measurement, in first-seen order.
type recorder struct {
	rep   *Report
	byKey map[string]*Measurement
}

func (r *recorder) add(m Measurement, s Sample) {
	got := r.byKey[m.Key]
	if got == nil {
		got = &m
		r.byKey[m.Key] = got
		r.rep.Measurements = append(r.rep.Measurements, got)
	}
	got.Runs = append(got.Runs, s)
}

// measure runs every selected section Params.Repeats times, interleaved
// (run 1 of everything, then run 2, ...) so that slow drift of the
// machine touches every measurement alike, and records the medians.
func measure(rep *Report, progress io.Writer) error {
	p := rep.Params
	bud := budget{d: p.Duration, n: p.Iters}
	rec := &recorder{rep: rep, byKey: map[string]*Measurement{}}
	on := func(sec string) bool { return slices.Contains(p.Sections, sec) }
	for r := 1; r <= p.Repeats; r++ {
		step := func(what string) { fmt.Fprintf(progress, "bench: run %d/%d: %s\n", r, p.Repeats, what) }
		// A lock measurement asked for by two sections runs once per repeat.
		memo := map[string]Sample{}
		lock := func(key string, f func(string, int, budget) (Sample, error), kind string, n int) (Sample, error) {
			if s, ok := memo[key]; ok {
				return s, nil
			}
			step(key)
			s, err := f(kind, n, bud)
			if err != nil {
				return s, fmt.Errorf("%s: %w", key, err)
			}
			memo[key] = s
			return s, nil
		}
		if on(secFloor) {
			step("floor")
			raw, err := rawRoundTrip(1, bud)
			if err != nil {
				return err
			}
			rec.add(Measurement{Key: keyRawRTT, Section: secFloor, Label: "raw net.Conn ping-pong RTT"}, raw)
			fan, err := rawRoundTrip(lockN-1, bud)
			if err != nil {
				return err
			}
			rec.add(Measurement{Key: keyRawFanout, Section: secFloor, N: lockN,
				Label: fmt.Sprintf("raw fan-out-and-echo to %d servers (N=%d)", lockN-1, lockN)}, fan)
			rec.add(Measurement{Key: keyRawOneWay, Section: secFloor, Label: "raw one-way estimate (RTT/2)"},
				Sample{P50: raw.P50 / 2, P99: raw.P99 / 2})
			one, err := rawOneWay(bud)
			if err != nil {
				return err
			}
			rec.add(Measurement{Key: keyRawOneWayTimed, Section: secFloor,
				Label: "raw one-way, timed (Write to the waiting reader's Read)"}, one)
			if slices.Contains(p.Transports, overTCP) {
				tcp, err := tcpRoundTrip(bud)
				if err != nil {
					return err
				}
				rec.add(Measurement{Key: keyTCPRTT, Section: secFloor, Transport: overTCP, Label: "transport.TCP ping-pong RTT"}, tcp)
			}
			if slices.Contains(p.Transports, overChan) {
				ch, err := chanRoundTrip(bud)
				if err != nil {
					return err
				}
				rec.add(Measurement{Key: keyChanRTT, Section: secFloor, Transport: overChan, Label: "transport.ChanNetwork ping-pong RTT"}, ch)
			}
		}
		for _, sec := range []string{secUncontended, secContended} {
			if !on(sec) {
				continue
			}
			for _, kind := range p.Transports {
				key, f, what := keyUncontended(kind, lockN), uncontended, "Lock+Unlock, others idle"
				if sec == secContended {
					key, f, what = keyContended(kind, lockN), contended, "every peer loops Lock/Unlock"
				}
				s, err := lock(key, f, kind, lockN)
				if err != nil {
					return err
				}
				rec.add(Measurement{Key: key, Section: sec, Transport: kind, N: lockN, WantMsgs: wantMsgs(lockN),
					Label: fmt.Sprintf("%s N=%d: %s", kind, lockN, what)}, s)
			}
		}
		if on(secHandoff) {
			for _, kind := range p.Transports {
				key := keyHandoff(kind, lockN)
				step(key)
				s, err := handoff(kind, lockN, bud)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				rec.add(Measurement{Key: key, Section: secHandoff, Transport: kind, N: lockN, WantMsgs: wantMsgs(lockN),
					Label: fmt.Sprintf("%s N=%d: Unlock to the waiting peer's grant", kind, lockN)}, s)
			}
		}
		if on(secCounts) {
			step(keyRawCounts)
			s, err := rawCounts(lockN, p.Cycles, bud)
			if err != nil {
				return fmt.Errorf("%s: %w", keyRawCounts, err)
			}
			rec.add(Measurement{Key: keyRawCounts, Section: secCounts, N: lockN,
				Label: fmt.Sprintf("raw fan-out-and-echo to %d servers", lockN-1)}, s)
			key := keyCounts(overTCP, lockN)
			step(key)
			s, err = mutexCounts(overTCP, lockN, p.Cycles, bud)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			rec.add(Measurement{Key: key, Section: secCounts, Transport: overTCP, N: lockN, WantMsgs: wantMsgs(lockN),
				Label: fmt.Sprintf("tcp N=%d: Lock+Unlock, others idle", lockN)}, s)
		}
		if on(secLedger) {
			for _, durable := range []bool{false, true} {
				key := keyLedger(durable)
				step(key)
				s, err := ledgerBench(p.Dir, durable, p.Submitters, bud)
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				label := "FileStore, fsync off (NoSync)"
				if durable {
					label = "FileStore, fsync on every append"
				}
				rec.add(Measurement{Key: key, Section: secLedger, Transport: overTCP, N: ledgerNodes, Label: label}, s)
			}
		}
		if on(secSweep) {
			for _, n := range p.SweepN {
				s, err := lock(keyUncontended(overChan, n), uncontended, overChan, n)
				if err != nil {
					return err
				}
				rec.add(Measurement{Key: keySweepLock(n), Section: secSweep, Transport: overChan, N: n, WantMsgs: wantMsgs(n),
					Label: fmt.Sprintf("chan N=%d: Lock+Unlock, others idle", n)}, s)
				s, err = lock(keyContended(overChan, n), contended, overChan, n)
				if err != nil {
					return err
				}
				rec.add(Measurement{Key: keySweepCycles(n), Section: secSweep, Transport: overChan, N: n, WantMsgs: wantMsgs(n),
					Label: fmt.Sprintf("chan N=%d: every peer loops Lock/Unlock", n)}, s)
			}
		}
		if on(secMessages) {
			if err := measureMessages(rec, p.MsgsN, step); err != nil {
				return err
			}
		}
		if on(secVersus) {
			if err := measureVersus(rec, p, step); err != nil {
				return err
			}
		}
	}
	for _, m := range rep.Measurements {
		m.summarize()
	}
	return nil
}

// measureVersus runs one repeat of the versus section: at each count of
// transfers and each fsync setting, the ledger, then raft beside it.
func measureVersus(rec *recorder, p Params, step func(string)) error {
	for _, n := range p.Transfers {
		warm := versusWarmup(n, p.Submitters)
		for _, fsync := range p.Fsync {
			durable := fsync == fsyncOn
			key := keyVersus(sysLedger, fsync, n)
			step(key)
			s, err := ledgerVersus(p.Dir, durable, p.Submitters, n, warm)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			label := "ledger, FileStore fsync off (NoSync)"
			if durable {
				label = "ledger, FileStore fsync on every append"
			}
			rec.add(Measurement{Key: key, Section: secVersus, Transport: overTCP, N: ledgerNodes, Transfers: n, Fsync: fsync, Label: label}, s)
			step(fmt.Sprintf("%s: %.0f committed/s, heap/node %s, restart %s (%s allocated)", key, s.Rate, mib(s.HeapPerNode), dur(s.Restart), mib(int64(s.RestartAlloc))))
			key = keyVersus(sysRaft, fsync, n)
			step(key)
			s, err = raftVersus(p.Dir, durable, p.Submitters, n, warm)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			label = "hashicorp/raft, InmemStore"
			if durable {
				label = "hashicorp/raft, raft-boltdb"
			}
			rec.add(Measurement{Key: key, Section: secVersus, Transport: overTCP, N: ledgerNodes, Transfers: n, Fsync: fsync, Label: label}, s)
			step(fmt.Sprintf("%s: %.0f committed/s, %d applies retried at a new leader", key, s.Rate, s.Retried))
		}
	}
	return nil
}

// Ratio compares two medians of one run.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Target is the most the ratio should be, or the least if AtLeast; 0
	// means the ratio is for information only.
	Target  float64 `json:"target,omitempty"`
	AtLeast bool    `json:"at_least,omitempty"`
	Met     bool    `json:"met,omitempty"`
}

// ratios computes the ratios of medians that the design's targets name,
// and a few more for information, from what was measured.
func ratios(rep *Report) []Ratio {
	by := map[string]*Measurement{}
	for _, m := range rep.Measurements {
		by[m.Key] = m
	}
	var out []Ratio
	addF := func(name string, num, den, target float64) {
		if num <= 0 || den <= 0 {
			return
		}
		r := Ratio{Name: name, Value: num / den, Target: target}
		r.Met = target > 0 && r.Value <= target
		out = append(out, r)
	}
	add := func(name string, num, den time.Duration, target float64) {
		addF(name, float64(num), float64(den), target)
	}
	get := func(key string) Sample {
		if m := by[key]; m != nil {
			return m.Median
		}
		return Sample{}
	}
	ut, ct := get(keyUncontended(overTCP, lockN)), get(keyContended(overTCP, lockN))
	uc, cc := get(keyUncontended(overChan, lockN)), get(keyContended(overChan, lockN))
	fan, oneway, timed := get(keyRawFanout), get(keyRawOneWay), get(keyRawOneWayTimed)
	tcpRTT, chanRTT := get(keyTCPRTT), get(keyChanRTT)
	ht, rawCounts, mutexCounts := get(keyHandoff(overTCP, lockN)), get(keyRawCounts), get(keyCounts(overTCP, lockN))
	add("uncontended TCP Lock+Unlock p50 / raw fan-out-and-echo p50", ut.P50, fan.P50, 1.3)
	add("TCP hand-off p50 (Unlock to the waiting peer's grant) / raw one-way p50 (timed)", ht.P50, timed.P50, 2)
	addF("goroutine wake-ups per uncontended TCP cycle / per raw fan-out-and-echo", mutexCounts.WakeupsPerOp, rawCounts.WakeupsPerOp, 0)
	addF("TCP segments per uncontended TCP cycle / per raw fan-out-and-echo", mutexCounts.SegsPerOp, rawCounts.SegsPerOp, 0)
	add("contended TCP hand-off (window/entries) / raw one-way (RTT/2)", ct.Handoff, oneway.P50, 0)
	add("contended TCP hand-off (grant gap) / raw one-way (RTT/2)", ct.GrantGap, oneway.P50, 0)
	add("uncontended TCP Lock+Unlock p50 / transport.TCP RTT p50", ut.P50, tcpRTT.P50, 0)
	add("contended TCP hand-off / (transport.TCP RTT p50 / 2)", ct.Handoff, tcpRTT.P50/2, 0)
	add("transport.TCP RTT p50 / raw RTT p50", tcpRTT.P50, get(keyRawRTT).P50, 0)
	add("uncontended Chan Lock+Unlock p50 / transport.Chan RTT p50", uc.P50, chanRTT.P50, 0)
	add("contended Chan hand-off / (transport.Chan RTT p50 / 2)", cc.Handoff, chanRTT.P50/2, 0)
	for _, fsync := range rep.Params.Fsync {
		target, floor := versusNoSyncTarget, "raft InmemStore"
		if fsync == fsyncOn {
			target, floor = versusSyncTarget, "raft-boltdb"
		}
		for _, n := range rep.Params.Transfers {
			l, r := get(keyVersus(sysLedger, fsync, n)), get(keyVersus(sysRaft, fsync, n))
			if l.Rate <= 0 || r.Rate <= 0 {
				continue
			}
			v := l.Rate / r.Rate
			out = append(out, Ratio{Name: fmt.Sprintf("ledger committed/s / %s committed/s, fsync %s, %d transfers", floor, fsync, n),
				Value: v, Target: target, AtLeast: true, Met: v >= target})
		}
	}
	return out
}
