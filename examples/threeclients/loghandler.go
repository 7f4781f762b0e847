package main

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/lamportledger/lamportledger/transport"
)

// onceLimit bounds the records a onceHandler remembers; when it is
// reached, it forgets them all and starts again.
const onceLimit = 1024

// onceSentinels are the errors a onceHandler tells apart in a record's
// "err" attribute; any other error counts as one kind.
var onceSentinels = []error{
	transport.ErrBadMagic, transport.ErrVersionMismatch, transport.ErrWrongPeer,
	transport.ErrClusterMismatch, transport.ErrStaleIncarnation, transport.ErrPeerCertificate,
	transport.ErrRefused, transport.ErrFrameTooLarge, transport.ErrProtocol, transport.ErrMalformed,
	transport.ErrSlowPeer, transport.ErrIdle, transport.ErrUnknownPeer,
}

// onceHandler passes each kind of record to its handler once: a peer that
// keeps refusing the handshake, say, is reported once, not at every
// reconnect attempt. A record's kind is its level, its message, its "peer"
// if that is a configured member, its "dir", and which of onceSentinels
// its "err" wraps; nothing a peer sends can make new kinds, so the filter
// stays small, and it is bounded anyway.
type onceHandler struct {
	slog.Handler
	members map[string]bool
	mu      *sync.Mutex
	seen    map[string]bool
}

func newOnceHandler(h slog.Handler, members []string) *onceHandler {
	m := map[string]bool{}
	for _, id := range members {
		m[id] = true
	}
	return &onceHandler{Handler: h, members: m, mu: &sync.Mutex{}, seen: map[string]bool{}}
}

// Handle implements slog.Handler.
func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	key := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "peer":
			if s := a.Value.String(); h.members[s] {
				key += " peer=" + s
			} else {
				key += " peer=?"
			}
		case "dir":
			if s := a.Value.String(); s == "in" || s == "out" || s == "dial" {
				key += " dir=" + s
			}
		case "err":
			key += " err=" + errKind(a.Value.Any())
		}
		return true
	})
	h.mu.Lock()
	dup := h.seen[key]
	if !dup {
		if len(h.seen) >= onceLimit {
			clear(h.seen)
		}
		h.seen[key] = true
	}
	h.mu.Unlock()
	if dup {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

// errKind names the first of onceSentinels that v wraps.
func errKind(v any) string {
	err, ok := v.(error)
	if !ok {
		return "-"
	}
	for i, s := range onceSentinels {
		if errors.Is(err, s) {
			return string(rune('a' + i))
		}
	}
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &cv):
		return "certificate"
	case errors.As(err, &rh):
		return "not TLS"
	case errors.As(err, &ne):
		return "net"
	}
	return "other"
}

// WithAttrs implements slog.Handler.
func (h *onceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &onceHandler{Handler: h.Handler.WithAttrs(attrs), members: h.members, mu: h.mu, seen: h.seen}
}

// WithGroup implements slog.Handler.
func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{Handler: h.Handler.WithGroup(name), members: h.members, mu: h.mu, seen: h.seen}
}
