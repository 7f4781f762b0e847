package lamportmutex

import (
	"sync"
	"time"
)

// Stats counts what a Mutex has done since New.
type Stats struct {
	// Entries is the number of times this peer took the lock.
	Entries uint64
	// Sent and Received count messages by kind. Sent counts what the
	// Transport accepted; Received includes the PeerUp and PeerDown reports
	// of the Transport.
	Sent, Received map[Kind]uint64
	// Dropped counts received messages that were not acted on: from a
	// non-member, from a quarantined incarnation, or bad input from a peer
	// not yet up.
	Dropped uint64
	// Stale counts messages ignored because they arrived before their
	// sender's Hello: meant for an earlier incarnation of this peer.
	Stale uint64
	// SendErrors counts messages the Transport refused: a peer's queue
	// was full (the peer is quarantined), or the Transport failed (the
	// Mutex stops).
	SendErrors uint64
	// HandlerErrors counts errors returned by Handler.HandleRelease and
	// Handler.HandleMessage.
	HandlerErrors uint64
	// Quarantined counts peer incarnations quarantined: for a protocol
	// violation, an error from a handler, or Mutex.Quarantine.
	Quarantined uint64
	// WaitTotal and WaitMax are the total and longest time a granted Lock
	// or TryLock call waited.
	WaitTotal, WaitMax time.Duration
}

// statsBox holds a Mutex's counters behind a lock of their own, so that
// Stats works from Config.Trace.
type statsBox struct {
	mu sync.Mutex
	s  Stats
}

func (b *statsBox) update(f func(s *Stats)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.s)
}

func (b *statsBox) snapshot() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	s.Sent = copyCounts(b.s.Sent)
	s.Received = copyCounts(b.s.Received)
	return s
}

func copyCounts(m map[Kind]uint64) map[Kind]uint64 {
	c := make(map[Kind]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
