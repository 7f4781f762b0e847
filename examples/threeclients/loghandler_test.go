package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/transport"
)

// Refusals that each claim another id and carry other peer text are one
// kind of record: reported once, and the filter does not grow with them.
func TestOnceHandlerIgnoresPeerText(t *testing.T) {
	var buf bytes.Buffer
	h := newOnceHandler(slog.NewTextHandler(&buf, nil), []string{"1", "2", "3"})
	log := slog.New(h)
	for i := range 10000 {
		claimed := fmt.Sprintf("evil-%d-%s", i, strings.Repeat("x", 100))
		log.Warn("transport: connection closed", "peer", claimed, "dir", "in", "remote", fmt.Sprintf("10.0.0.1:%d", i),
			"err", fmt.Errorf("%w: hello from %q", transport.ErrWrongPeer, claimed))
	}
	if n := strings.Count(buf.String(), "connection closed"); n != 1 {
		t.Fatalf("reported %d times, want once:\n%.500s", n, buf.String())
	}
	if len(h.seen) != 1 {
		t.Fatalf("filter holds %d entries, want 1", len(h.seen))
	}
	// Another member, or another kind of error, is another record.
	log.Warn("transport: connection closed", "peer", "2", "dir", "in", "err", transport.ErrWrongPeer)
	log.Warn("transport: connection closed", "peer", "2", "dir", "in", "err", transport.ErrClusterMismatch)
	log.Warn("transport: connection closed", "peer", "2", "dir", "in", "err", transport.ErrClusterMismatch)
	if n := strings.Count(buf.String(), "connection closed"); n != 3 {
		t.Fatalf("reported %d times, want 3:\n%s", n, buf.String())
	}
}

// The filter is bounded even if every record is new.
func TestOnceHandlerBounded(t *testing.T) {
	h := newOnceHandler(slog.DiscardHandler, nil)
	for i := range 3 * onceLimit {
		_ = h.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelWarn, fmt.Sprint("message ", i), 0))
		if len(h.seen) > onceLimit {
			t.Fatalf("filter holds %d entries, bound %d", len(h.seen), onceLimit)
		}
	}
}

// Refusals for different reasons at the TLS layer are told apart.
func TestOnceHandlerTellsTLSRefusalsApart(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newOnceHandler(slog.NewTextHandler(&buf, nil), []string{"1", "2"}))
	log.Warn("transport: connection closed", "peer", "", "dir", "in", "err", errors.New("TLS handshake: tls: client didn't provide a certificate"))
	log.Warn("transport: connection closed", "peer", "", "dir", "in", "err", fmt.Errorf("TLS handshake: %w", &tls.CertificateVerificationError{Err: errors.New("unknown authority")}))
	log.Warn("transport: connection closed", "peer", "", "dir", "in", "err", fmt.Errorf("TLS handshake: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}))
	if n := strings.Count(buf.String(), "connection closed"); n != 3 {
		t.Fatalf("reported %d times, want 3:\n%s", n, buf.String())
	}
}
