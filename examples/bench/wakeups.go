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
)

// wakeupsMethod says what tracedWindow counts, for the report.
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

// unknownSite names the wait of a goroutine whose blocking was not traced.
const unknownSite = "(unknown)"

// traceCounts is what a parsed trace holds between the window marks.
type traceCounts struct {
	wakeups, created int
	// by counts the wake-ups by where the woken goroutine waited: the
	// first function of its stack outside the standard library, or its
	// start function if it has none (the runtime's own goroutines).
	by map[string]int
	// marks is the number of window marks seen.
	marks int
}

// tracedWindow runs cycle k times under runtime/trace, between two marks,
// and returns the goroutine wake-ups and creations between the marks.
func tracedWindow(k int, cycle func() error) (_ traceCounts, err error) {
	f, err := os.CreateTemp("", "lamportledger-bench-*.trace")
	if err != nil {
		return traceCounts{}, fmt.Errorf("trace: %w", err)
	}
	defer func() { err = errors.Join(err, os.Remove(f.Name())) }()
	if err := trace.Start(f); err != nil {
		_ = f.Close()
		return traceCounts{}, fmt.Errorf("trace: %w", err)
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
		return traceCounts{}, err
	}
	return countWakeups(f.Name())
}

// countWakeups reads the trace in file with `go tool trace -d=parsed`.
func countWakeups(file string) (traceCounts, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return traceCounts{}, fmt.Errorf("counting wake-ups needs the go command: %w", err)
	}
	cmd := exec.Command(goCmd, "tool", "trace", "-d=parsed", file)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return traceCounts{}, err
	}
	if err := cmd.Start(); err != nil {
		return traceCounts{}, fmt.Errorf("go tool trace: %w", err)
	}
	tc, scanErr := scanParsedTrace(bufio.NewScanner(out))
	waitErr := cmd.Wait()
	if err := errors.Join(scanErr, waitErr); err != nil {
		return traceCounts{}, fmt.Errorf("go tool trace: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if tc.marks != 2 {
		return traceCounts{}, fmt.Errorf("go tool trace: %d window marks found, want 2", tc.marks)
	}
	return tc, nil
}

// scanParsedTrace counts, in the events `go tool trace -d=parsed` prints
// (in time order: a line per event, then its stacks, one indented line
// per function and one more per file), the goroutine transitions from
// Waiting to Runnable and from NotExist to Runnable between the window
// marks. A transition of a goroutine to Waiting names, in its
// TransitionStack, where that goroutine waits; a later wake-up is counted
// there.
func scanParsedTrace(sc *bufio.Scanner) (traceCounts, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	tc := traceCounts{by: map[string]int{}}
	site := map[string]string{} // goroutine id -> where it waits
	in := false
	var (
		blocking string   // the goroutine whose wait's stack follows, if any
		inStack  bool     // reading blocking's TransitionStack
		frames   []string // its functions, innermost first
	)
	endStack := func() {
		if blocking != "" {
			site[blocking] = waitSite(frames)
		}
		blocking, inStack, frames = "", false, frames[:0]
	}
	for sc.Scan() && tc.marks < 2 {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "M="):
			endStack()
		case line == "TransitionStack=":
			inStack = blocking != ""
			continue
		case line == "Stack=" || line == "":
			inStack = false
			continue
		case inStack && strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "\t\t"):
			fn, _, _ := strings.Cut(strings.TrimSpace(line), " @ ")
			frames = append(frames, fn)
			continue
		default:
			continue
		}
		if strings.Contains(line, " Log ") && strings.Contains(line, `Category="`+traceCategory+`"`) {
			tc.marks++
			in = tc.marks == 1 && strings.Contains(line, `Message="`+traceStart+`"`)
			continue
		}
		g := goID(line)
		if !strings.Contains(line, " StateTransition ") || g == "" {
			continue
		}
		switch {
		case strings.Contains(line, "->Waiting "):
			blocking = g
		case !in:
		case strings.Contains(line, " Waiting->Runnable"):
			tc.wakeups++
			where, ok := site[g]
			if !ok {
				where = unknownSite
			}
			tc.by[where]++
		case strings.Contains(line, " NotExist->Runnable"):
			tc.created++
		}
	}
	endStack()
	// Drain the rest so that the tool does not block on a full pipe.
	for sc.Scan() {
	}
	return tc, sc.Err()
}

// goID returns the goroutine id of a StateTransition line, or "".
func goID(line string) string {
	_, rest, ok := strings.Cut(line, " GoID=")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

// waitSite names where a goroutine waits from its stack (innermost
// first): the first function outside the standard library (whose import
// path has a dot in its first element, or package main), else the
// outermost function, its start.
func waitSite(frames []string) string {
	for _, fn := range frames {
		first, _, _ := strings.Cut(fn, "/")
		if strings.Contains(first, ".") && strings.Contains(fn, "/") || strings.HasPrefix(fn, "main.") {
			return fn
		}
	}
	if len(frames) == 0 {
		return unknownSite
	}
	return frames[len(frames)-1]
}
