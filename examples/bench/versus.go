package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The figures the versus section holds the ledger to (issue 13).
const (
	versusNoSyncTarget  = 2.0      // ledger/raft committed/s, fsync off, at least
	versusSyncTarget    = 3.0      // ledger/raft-boltdb committed/s, fsync on, at least
	versusHeapTarget    = 64 << 20 // heap per node, at most
	versusRestartTarget = 500 * time.Millisecond
)

// fsync settings of the versus section, as -fsync takes them.
const (
	fsyncOff = "off"
	fsyncOn  = "on"
)

// versusWarmup is the untimed warm-up before n transfers of the versus
// section: 1%, and at least one per submitter.
func versusWarmup(n int64, submitters int) int64 { return max(n/100, int64(submitters)) }

// versusPatience bounds how long a run of n transfers of the versus
// section may take before it is abandoned as hung: as long as n at a
// thousand a second, and a minute more.
func versusPatience(n int64) time.Duration { return time.Minute + time.Duration(n)*time.Millisecond }

// keyVersus names a measurement of the versus section: of the ledger or
// of raft, with fsync off or on, timed over n transfers.
func keyVersus(system, fsync string, n int64) string {
	return fmt.Sprintf("versus/%s/fsync-%s/%d", system, fsync, n)
}

// Systems of the versus section.
const (
	sysLedger = "ledger"
	sysRaft   = "raft"
)

// ledgerVersus times n transfers (after a warm-up of warm) through the
// ledger with submitters goroutines spread over its nodes, then measures
// the heap each node holds, then closes the group and times the restart of
// one node on its store.
//
// Heap per node is the growth of the heap in use (runtime.MemStats.HeapInuse
// after a full collection) from before the group started to after the
// transfers, divided by the number of nodes: the three nodes, with their
// mutexes and transports, are in this process, and nothing else of the
// bench holds memory across that span.
func ledgerVersus(dir string, durable bool, submitters int, n, warm int64) (_ Sample, err error) {
	tmp, err := os.MkdirTemp(dir, "lamportledger-versus-*")
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	ctx, cancel := context.WithTimeout(context.Background(), versusPatience(n))
	defer cancel()

	heap0 := liveHeap()
	g, err := startLedger(tmp, durable)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, g.close()) }()
	op := ledgerOp(g)
	if _, err := submit(ctx, submitters, budget{n: warm}.start(), op); err != nil {
		return Sample{}, err
	}
	h0, err := g.converge(ctx)
	if err != nil {
		return Sample{}, err
	}
	s, err := timedWindow(ctx, submitters, n, op)
	if err != nil {
		return s, err
	}
	h1, err := g.converge(ctx)
	if err != nil {
		return s, err
	}
	s.Committed = int64(h1 - h0)
	s.Rate = float64(s.Committed) / s.Seconds
	if s.Committed != s.Ops {
		return s, fmt.Errorf("ledger: %d transfers returned success but %d blocks were added", s.Ops, s.Committed)
	}
	if heap := liveHeap(); heap > heap0 {
		s.HeapPerNode = int64(heap-heap0) / ledgerNodes
	}
	if err := g.identical(); err != nil {
		return s, err
	}
	s.Identical = true
	if err := g.close(); err != nil {
		return s, err
	}
	s.Restart, s.RestartAlloc, err = g.restart()
	return s, err
}

// timedWindow runs n operations with submitters goroutines and returns
// their latencies and the window's length, and no more: the latencies are
// dropped before it returns, so that they are not counted as heap.
func timedWindow(ctx context.Context, submitters int, n int64, op func(context.Context, int) error) (Sample, error) {
	start := time.Now()
	lat, err := submit(ctx, submitters, budget{n: n}.start(), op)
	if err != nil {
		return Sample{}, err
	}
	return latencySample(lat, time.Since(start)), nil
}

// parseCounts parses a comma-separated list of transfer counts, each a
// number with an optional k (thousand) or M (million) suffix.
func parseCounts(s string) ([]int64, error) {
	var out []int64
	for _, field := range strings.Split(s, ",") {
		f := strings.TrimSpace(field)
		mult := int64(1)
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1000_000, strings.TrimSuffix(f, "M")
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil || v < 1 || v > maxTransfers/mult {
			return nil, fmt.Errorf("%q is not a count of transfers from 1 to %d", field, maxTransfers)
		}
		out = append(out, v*mult)
	}
	return out, nil
}

// maxTransfers bounds a count of transfers of the versus section.
const maxTransfers = 100_000_000
