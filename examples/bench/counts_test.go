package main

import (
	"bufio"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestScanParsedTrace checks the wake-up count on events as `go tool
// trace -d=parsed` prints them: only goroutine transitions between the
// marks count, stack lines and processor transitions do not, and a
// wake-up is counted where the goroutine last began to wait.
func TestScanParsedTrace(t *testing.T) {
	in := `M=1 P=0 G=7 StateTransition Time=1 GoID=7 Running->Waiting Reason="chan receive"
TransitionStack=
	runtime.gopark @ 0x1
		/go/src/runtime/proc.go:462
	internal/poll.(*FD).Read @ 0x2
		/go/src/internal/poll/fd_unix.go:165
	github.com/x/y/transport.(*TCP).readLoop @ 0x3
		/src/tcp.go:1
	github.com/x/y/transport.(*TCP).start.func1 @ 0x4
		/src/tcp.go:2

Stack=
	main.other @ 0x5
		/src/main.go:1

M=1 P=0 G=1 StateTransition Time=1 GoID=7 Waiting->Runnable Reason=""
M=1 P=0 G=1 Log Time=2 Task=0 Category="other" Message="start"
M=1 P=0 G=1 Log Time=3 Task=0 Category="lamportledger-bench-window" Message="start"
Stack=
	runtime.gopark @ 0x1
M=1 P=0 G=1 StateTransition Time=4 GoID=7 Waiting->Runnable Reason=""
M=-1 P=-1 G=-1 StateTransition Time=5 GoID=8 Waiting->Runnable Reason=""
M=1 P=0 G=1 StateTransition Time=6 ProcID=1 Idle->Running
M=1 P=0 G=1 StateTransition Time=7 GoID=9 NotExist->Runnable Reason=""
M=1 P=0 G=9 StateTransition Time=8 GoID=9 Runnable->Running Reason=""
M=1 P=0 G=3 StateTransition Time=8 GoID=3 Running->Waiting Reason="GC worker (idle)"
TransitionStack=
	runtime.gopark @ 0x1
		/go/src/runtime/proc.go:462
	runtime.gcBgMarkWorker @ 0x6
		/go/src/runtime/mgc.go:1
M=1 P=0 G=1 StateTransition Time=8 GoID=3 Waiting->Runnable Reason=""
M=1 P=0 G=1 Log Time=9 Task=0 Category="lamportledger-bench-window" Message="end"
M=1 P=0 G=1 StateTransition Time=10 GoID=7 Waiting->Runnable Reason=""
`
	tc, err := scanParsedTrace(bufio.NewScanner(strings.NewReader(in)))
	if err != nil || tc.wakeups != 3 || tc.created != 1 || tc.marks != 2 {
		t.Errorf("%+v, err %v; want 3 wake-ups, 1 created, 2 marks", tc, err)
	}
	want := map[string]int{"github.com/x/y/transport.(*TCP).readLoop": 1, unknownSite: 1, "runtime.gcBgMarkWorker": 1}
	if !maps.Equal(tc.by, want) {
		t.Errorf("wake-ups by site %v, want %v", tc.by, want)
	}
	// Without the start mark nothing counts.
	noStart := strings.Replace(in, `Message="start"`+"\nStack", `Message="x"`+"\nStack", 1)
	if tc, _ := scanParsedTrace(bufio.NewScanner(strings.NewReader(noStart))); tc.wakeups != 0 {
		t.Errorf("%d wake-ups counted without a start mark", tc.wakeups)
	}
}

// TestTracedWindowCountsWakeups checks the whole wake-up count on a real
// trace: a ping-pong over unbuffered channels wakes the partner and then
// the caller, so every cycle costs at least 2 wake-ups; the runtime may
// add a few of its own. A cycle that wakes nobody must count far fewer.
func TestTracedWindowCountsWakeups(t *testing.T) {
	defer goleak.VerifyNone(t)
	const k = 200
	ping, pong := make(chan int), make(chan int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := range ping {
			pong <- v
		}
	}()
	defer func() {
		close(ping)
		<-done
	}()
	tc, err := tracedWindow(k, func() error {
		ping <- 1
		<-pong
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if tc.wakeups < 2*k || tc.wakeups > 3*k || tc.created != 0 {
		t.Errorf("ping-pong: %d wake-ups, %d created in %d cycles; want 2 per cycle and none created", tc.wakeups, tc.created, k)
	}
	// The partner waits in its closure, the caller in the test. A
	// goroutine that was already waiting when the trace started has no
	// stack for that wait, so a wake-up at each end of the window may go
	// unplaced, or be placed at the other goroutine's site.
	partner, caller := tc.by["github.com/lamportledger/lamportledger/examples/bench.TestTracedWindowCountsWakeups.func1"],
		tc.by["github.com/lamportledger/lamportledger/examples/bench.TestTracedWindowCountsWakeups.func3"]
	if partner < k-2 || caller < k-2 {
		t.Errorf("wake-ups by site %v: want at least %d for the partner and for the caller", tc.by, k-2)
	}
	idle, err := tracedWindow(k, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if idle.wakeups >= k/2 {
		t.Errorf("a cycle that wakes nobody: %d wake-ups in %d cycles", idle.wakeups, k)
	}
}

// TestRawCountsSegments checks the segment count: every one of the four
// writes of a fan-out-and-echo to 2 servers is at least one data segment.
func TestRawCountsSegments(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are counted on Linux only")
	}
	defer goleak.VerifyNone(t)
	s, err := rawCounts(3, 50, budget{n: 50})
	if err != nil {
		t.Fatal(err)
	}
	if s.DataSegsPerOp < 4 || s.SegsPerOp < s.DataSegsPerOp || s.Ops != 50 {
		t.Errorf("%+v: want at least 4 data segments per cycle, and segments >= data segments", s)
	}
	if s.WakeupsPerOp < 1 {
		t.Errorf("%g wake-ups per fan-out-and-echo: the client must wait for at least one echo", s.WakeupsPerOp)
	}
}

// TestSegmentsSentRefusesChurn checks that a socket opened or closed in
// the window makes the count an error rather than a wrong number, and that
// the 32-bit counters wrap.
func TestSegmentsSentRefusesChurn(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are counted on Linux only")
	}
	a := map[string]sockCount{"socket:[1]": {segs: 10, dataSegs: 5}}
	b := map[string]sockCount{"socket:[2]": {segs: 20, dataSegs: 5}}
	if _, _, err := segmentsSent(a, b); err == nil {
		t.Error("a socket replaced by another was counted")
	}
	if _, _, err := segmentsSent(a, map[string]sockCount{}); err == nil {
		t.Error("a closed socket was counted")
	}
	wrap := map[string]sockCount{"socket:[1]": {segs: 1<<32 - 2, dataSegs: 5}}
	after := map[string]sockCount{"socket:[1]": {segs: 3, dataSegs: 6}}
	if segs, data, err := segmentsSent(wrap, after); err != nil || segs != 5 || data != 1 {
		t.Errorf("wrapped counter: %d segments, %d data, %v; want 5, 1", segs, data, err)
	}
}

// TestParseSizes pins the group-size lists and ranges.
func TestParseSizes(t *testing.T) {
	got, err := parseSizes("3-6, 8,32")
	if err != nil || !slices.Equal(got, []int{3, 4, 5, 6, 8, 32}) {
		t.Errorf("parseSizes = %v, %v", got, err)
	}
	if s := sizeList(got); s != "3-6,8,32" {
		t.Errorf("sizeList = %q", s)
	}
	if s := sizeList([]int{3, 4}); s != "3,4" {
		t.Errorf("sizeList of two = %q", s)
	}
}

// TestCoreSelectsTheTargets checks that -core runs the sections of the
// targets over TCP, and that an explicit -sections wins.
func TestCoreSelectsTheTargets(t *testing.T) {
	var errb strings.Builder
	p, _, _, err := parseFlags([]string{"-core"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Sections, coreSections) || !slices.Equal(p.Transports, []string{overTCP}) || len(p.MsgsN) != 30 {
		t.Errorf("-core: sections %v, transports %v, messages sizes %v", p.Sections, p.Transports, p.MsgsN)
	}
	p, _, _, err = parseFlags([]string{"-core", "-sections", "handoff"}, &errb)
	if err != nil || !slices.Equal(p.Sections, []string{secHandoff}) {
		t.Errorf("-core -sections handoff: %v, %v", p.Sections, err)
	}
}
