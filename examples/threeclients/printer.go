package main

import (
	"fmt"
	"io"
	"sync"
)

// printer writes whole lines, one at a time, from any goroutine.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

// say prints "[client] message".
func (p *printer) say(client, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%s] %s\n", client, fmt.Sprintf(format, args...))
}

// raw prints text as it is.
func (p *printer) raw(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, text)
}
