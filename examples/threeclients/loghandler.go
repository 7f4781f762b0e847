package main

import (
	"context"
	"log/slog"
	"sync"
)

// onceHandler passes each distinct record (message and attributes, time
// aside) to its handler once: a peer that keeps refusing the handshake,
// say, is reported once, not at every reconnect attempt.
type onceHandler struct {
	slog.Handler
	mu   *sync.Mutex
	seen map[string]bool
}

func newOnceHandler(h slog.Handler) *onceHandler {
	return &onceHandler{Handler: h, mu: &sync.Mutex{}, seen: map[string]bool{}}
}

// Handle implements slog.Handler.
func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "remote" { // the ephemeral port changes at every attempt
			key += " " + a.String()
		}
		return true
	})
	h.mu.Lock()
	dup := h.seen[key]
	h.seen[key] = true
	h.mu.Unlock()
	if dup {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *onceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &onceHandler{Handler: h.Handler.WithAttrs(attrs), mu: h.mu, seen: h.seen}
}

// WithGroup implements slog.Handler.
func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{Handler: h.Handler.WithGroup(name), mu: h.mu, seen: h.seen}
}
