package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/trace"
	"strings"
	"time"
)

// errNoSegments is the error of the segment counters where they do not
// exist; the counts then go without segments.
var errNoSegments = errors.New("segments: counting TCP segments needs Linux")

// wakeupsMethod says what countWakeups counts, for the report.
const wakeupsMethod = "goroutine wake-ups are the Waiting->Runnable transitions (GoUnblock) of any goroutine " +
	"in a runtime/trace of the K cycles, cut by two trace.Log marks, as `go tool trace -d=parsed` prints them; " +
	"the runtime's own goroutines (GC workers, the trace reader) count too; " +
	"\"created\" counts NotExist->Runnable (GoCreate)"

// Trace marks around the counted window.
const (
	traceCategory = "lamportledger-bench-window"
	traceStart    = "start"
	traceEnd      = "end"
)

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
	wake, created, err := tracedWindow(k, cycle)
	if err != nil {
		return err
	}
	s.WakeupsPerOp = float64(wake) / float64(k)
	s.CreatedPerOp = float64(created) / float64(k)
	s.Ops = int64(k)
	return nil
}

// tracedWindow runs cycle k times under runtime/trace, between two marks,
// and returns the goroutine wake-ups and creations between the marks.
func tracedWindow(k int, cycle func() error) (wakeups, created int, err error) {
	f, err := os.CreateTemp("", "lamportledger-bench-*.trace")
	if err != nil {
		return 0, 0, fmt.Errorf("trace: %w", err)
	}
	defer func() { err = errors.Join(err, os.Remove(f.Name())) }()
	if err := trace.Start(f); err != nil {
		_ = f.Close()
		return 0, 0, fmt.Errorf("trace: %w", err)
	}
	ctx := context.Background()
	trace.Log(ctx, traceCategory, traceStart)
	var cycleErr error
	for range k {
		if cycleErr = cycle(); cycleErr != nil {
			break
		}
	}
	trace.Log(ctx, traceCategory, traceEnd)
	trace.Stop()
	if err := errors.Join(cycleErr, f.Close()); err != nil {
		return 0, 0, err
	}
	return countWakeups(f.Name())
}

// countWakeups reads the trace in file with `go tool trace -d=parsed` and
// counts, between the marks, the goroutines made runnable from waiting
// (wake-ups) and the goroutines created.
func countWakeups(file string) (wakeups, created int, err error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return 0, 0, fmt.Errorf("counting wake-ups needs the go command: %w", err)
	}
	cmd := exec.Command(goCmd, "tool", "trace", "-d=parsed", file)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("go tool trace: %w", err)
	}
	wakeups, created, marks, scanErr := scanParsedTrace(bufio.NewScanner(out))
	waitErr := cmd.Wait()
	if err := errors.Join(scanErr, waitErr); err != nil {
		return 0, 0, fmt.Errorf("go tool trace: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if marks != 2 {
		return 0, 0, fmt.Errorf("go tool trace: %d window marks found, want 2", marks)
	}
	return wakeups, created, nil
}

// scanParsedTrace counts, in the events `go tool trace -d=parsed` prints
// (one per line, in time order), the goroutine transitions from Waiting to
// Runnable and from NotExist to Runnable between the window marks. marks
// is the number of marks seen.
func scanParsedTrace(sc *bufio.Scanner) (wakeups, created, marks int, err error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	in := false
	for sc.Scan() && marks < 2 {
		line := sc.Text()
		if !strings.HasPrefix(line, "M=") {
			continue // stack frames and blank lines
		}
		switch {
		case strings.Contains(line, " Log ") && strings.Contains(line, `Category="`+traceCategory+`"`):
			marks++
			in = marks == 1 && strings.Contains(line, `Message="`+traceStart+`"`)
		case !in || !strings.Contains(line, " StateTransition ") || !strings.Contains(line, " GoID="):
		case strings.Contains(line, " Waiting->Runnable"):
			wakeups++
		case strings.Contains(line, " NotExist->Runnable"):
			created++
		}
	}
	// Drain the rest so that the tool does not block on a full pipe.
	for sc.Scan() {
	}
	return wakeups, created, marks, sc.Err()
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
	cycle := func() error {
		if _, err := mu.Lock(ctx); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		return mu.Unlock(nil)
	}
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
