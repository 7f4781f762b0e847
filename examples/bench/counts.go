package main

import (
	"context"
	"errors"
	"time"
)

// errNoSegments is the error of the segment counters where they do not
// exist; the counts then go without segments.
var errNoSegments = errors.New("segments: counting TCP segments needs Linux")

// countCycles runs cycle k times twice, each time after settle (which
// waits until the system is quiet, if it needs to): first counting the TCP
// segments sent, then under runtime/trace counting goroutine wake-ups. It
// fills in the per-cycle counts of s.
func countCycles(s *Sample, k int, cycle func() error, settle func() error) error {
	if err := settle(); err != nil {
		return err
	}
	before, errSeg := tcpSockets()
	host0, errHost := hostOutSegs()
	for range k {
		if err := cycle(); err != nil {
			return err
		}
	}
	if err := settle(); err != nil {
		return err
	}
	if errSeg == nil {
		after, err := tcpSockets()
		if err != nil {
			return err
		}
		segs, data, err := segmentsSent(before, after)
		if err != nil {
			return err
		}
		s.SegsPerOp = float64(segs) / float64(k)
		s.DataSegsPerOp = float64(data) / float64(k)
	} else if !errors.Is(errSeg, errNoSegments) {
		return errSeg
	}
	if errHost == nil {
		host1, err := hostOutSegs()
		if err != nil {
			return err
		}
		s.HostSegsPerOp = float64(host1-host0) / float64(k)
	}

	if err := settle(); err != nil {
		return err
	}
	tc, err := tracedWindow(k, cycle)
	if err != nil {
		return err
	}
	s.WakeupsPerOp = float64(tc.wakeups) / float64(k)
	s.CreatedPerOp = float64(tc.created) / float64(k)
	s.WakeupsBy = map[string]float64{}
	for where, n := range tc.by {
		s.WakeupsBy[where] = float64(n) / float64(k)
	}
	s.Ops = int64(k)
	return nil
}

// mutexCounts counts wake-ups and segments per uncontended Lock+Unlock at
// one peer of n over kind, after a warm-up of k/5 cycles. Between the
// windows the group settles: every peer's queue empties and every REPLY
// and RELEASE is out.
func mutexCounts(kind string, n, k int, bud budget) (_ Sample, err error) {
	c, err := newCluster(kind, n, nil)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()
	mu := c.mus[0]
	cycle := func() error { return lockCycle(ctx, mu) }
	for range max(k/5, 1) {
		if err := cycle(); err != nil {
			return Sample{}, err
		}
	}
	var s Sample
	t0, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	settle := func() error {
		_, err := c.counts(ctx)
		return err
	}
	if err := countCycles(&s, k, cycle, settle); err != nil {
		return Sample{}, err
	}
	t1, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	// Both windows ran k cycles each.
	msgsSample(&s, n, t0, t1)
	return s, nil
}

// rawCounts counts wake-ups and segments per raw fan-out-and-echo to n-1
// echo servers (no project code), after a warm-up of k/5 round trips.
func rawCounts(n, k int, bud budget) (Sample, error) {
	f, err := newRawFanout(n-1, time.Now().Add(bud.patience()))
	if err != nil {
		return Sample{}, err
	}
	defer f.close()
	for range max(k/5, 1) {
		if err := f.once(); err != nil {
			return Sample{}, err
		}
	}
	var s Sample
	if err := countCycles(&s, k, f.once, func() error { return nil }); err != nil {
		return Sample{}, err
	}
	return s, nil
}
