package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// gateWriter blocks every Write until open is closed.
type gateWriter struct {
	open chan struct{}
	mu   sync.Mutex
	b    strings.Builder
}

func (w *gateWriter) Write(p []byte) (int, error) {
	<-w.open
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// A writer that takes nothing never blocks the callers: what does not fit
// the queue is dropped, and when the writer moves again one line says how
// many lines were lost, where they were lost.
func TestPrinterDropsWhenStalled(t *testing.T) {
	w := &gateWriter{open: make(chan struct{})}
	p := newPrinter(w)
	const n = printQueueLines * 3
	for i := range n {
		p.say("1", 0, "line %d", i) // would hang here if it waited on w
	}
	close(w.open)
	p.close()

	lines := strings.Split(strings.TrimSuffix(w.b.String(), "\n"), "\n")
	lostRx := regexp.MustCompile(`^\((\d+) lines of output lost: the output was not being read\)$`)
	next, lost, reports := 0, 0, 0
	for _, l := range lines {
		if m := lostRx.FindStringSubmatch(l); m != nil {
			k, _ := strconv.Atoi(m[1])
			next += k
			lost += k
			reports++
			continue
		}
		if want := fmt.Sprintf("[1 @0] line %d", next); l != want {
			t.Fatalf("got %q, want %q (lines out of order or lost without a report)", l, want)
		}
		next++
	}
	if next != n {
		t.Fatalf("accounted for %d lines, want %d", next, n)
	}
	if lost < n-printQueueLines-1 || reports == 0 {
		t.Fatalf("lost %d in %d reports; want at least %d", lost, reports, n-printQueueLines-1)
	}
}

// The byte bound holds too: one huge text is dropped, not queued.
func TestPrinterByteBound(t *testing.T) {
	w := &gateWriter{open: make(chan struct{})}
	p := newPrinter(w)
	p.raw(strings.Repeat("x", printQueueBytes+1))
	p.raw("after\n")
	close(w.open)
	p.close()
	if got := w.b.String(); got != "(1 lines of output lost: the output was not being read)\nafter\n" {
		t.Fatalf("got %q", got)
	}
}

func TestQuoteID(t *testing.T) {
	for id, want := range map[string]string{
		"1": "1", "alice": "alice", "": `""`, "a b": `"a b"`, "x\x1b[2J": `"x\x1b[2J"`,
		"[1] SUCCESS": `"[1] SUCCESS"`, "é": "é", "a\nb": `"a\nb"`,
	} {
		if got := quoteID(id); got != want {
			t.Errorf("quoteID(%q) = %s, want %s", id, got, want)
		}
	}
}
