package main

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode"
)

// Bounds of a printer's queue.
const (
	printQueueLines = 4096
	printQueueBytes = 8 << 20
)

// flushWait bounds how long a closing printer waits for a writer that does
// not take its output.
const flushWait = 2 * time.Second

// printer writes text to w from one goroutine, so that no caller ever
// waits on w. Text waits in a bounded queue; what does not fit is dropped
// and counted, and once w takes text again one line says how many lines
// were lost. Each call's text is written whole, in call order.
type printer struct {
	w    io.Writer
	mu   sync.Mutex
	cond *sync.Cond // signals the writer: queue not empty, or closed
	q    []entry
	size int // bytes of text in q
	lost int // dropped after everything written and before everything in q
	shut bool
	done chan struct{}
}

// entry is queued text and the count of texts dropped right after it.
type entry struct {
	text      string
	lostAfter int
}

// newPrinter starts a printer on w; close stops it.
func newPrinter(w io.Writer) *printer {
	p := &printer{w: w, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.run()
	return p
}

func (p *printer) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.q) == 0 && p.lost == 0 && !p.shut {
			p.cond.Wait()
		}
		if len(p.q) == 0 && p.lost == 0 {
			p.mu.Unlock()
			return
		}
		var e entry
		if p.lost > 0 {
			e.lostAfter, p.lost = p.lost, 0
		} else {
			e = p.q[0]
			p.q[0] = entry{}
			p.q = p.q[1:]
			p.size -= len(e.text)
		}
		p.mu.Unlock()
		_, _ = io.WriteString(p.w, e.text)
		if e.lostAfter > 0 {
			_, _ = fmt.Fprintf(p.w, "(%d lines of output lost: the output was not being read)\n", e.lostAfter)
		}
	}
}

// Write queues b as one piece of text; it never blocks on the writer. It
// lets a printer serve as a log handler's output.
func (p *printer) Write(b []byte) (int, error) {
	p.raw(string(b))
	return len(b), nil
}

// say prints "[client @clock] message": the client's Lamport clock when
// it printed the line.
func (p *printer) say(client string, clock uint64, format string, args ...any) {
	p.raw(linePrefix(client, clock) + fmt.Sprintf(format, args...) + "\n")
}

// linePrefix is "[client @clock] ".
func linePrefix(client string, clock uint64) string {
	return "[" + quoteID(client) + " @" + strconv.FormatUint(clock, 10) + "] "
}

// raw prints text as it is.
func (p *printer) raw(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return
	}
	if len(p.q) >= printQueueLines || p.size+len(text) > printQueueBytes {
		if len(p.q) > 0 {
			p.q[len(p.q)-1].lostAfter++
		} else {
			p.lost++
			p.cond.Signal()
		}
		return
	}
	p.q = append(p.q, entry{text: text})
	p.size += len(text)
	p.cond.Signal()
}

// close writes what is queued, waiting at most flushWait for a writer
// that does not take it, and stops the printer. Later text is discarded.
func (p *printer) close() {
	p.mu.Lock()
	p.shut = true
	p.cond.Signal()
	p.mu.Unlock()
	t := time.NewTimer(flushWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C: // the goroutine ends when its write returns, or with the process
	}
}

// quoteID is id as it prints: as it is when it is plain printable text,
// else quoted with Go escapes, so that an id from a config file cannot
// forge or garble output.
func quoteID(id string) string {
	if id == "" {
		return `""`
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '\\' || r == '[' || r == ']' {
			return strconv.Quote(id)
		}
	}
	return id
}
