package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"golang.org/x/sync/errgroup"
)

// wantMsgs is the messages per entry of Lamport's algorithm: a REQUEST, a
// REPLY and a RELEASE to or from every other peer.
func wantMsgs(n int) float64 { return float64(algMsgs(lamportmutex.Lamport, n)) }

// algMsgs is the messages per entry of alg with no payloads: 3(N-1) for
// Lamport's algorithm, 2(N-1) for Ricart-Agrawala (no RELEASE).
func algMsgs(alg lamportmutex.Algorithm, n int) uint64 {
	if alg == lamportmutex.RicartAgrawala {
		return uint64(2 * (n - 1))
	}
	return uint64(3 * (n - 1))
}

// msgsSample fills in messages per entry from the counts before and after
// a window of a group of n peers running Lamport's algorithm.
func msgsSample(s *Sample, n int, t0, t1 tally) {
	algMsgsSample(s, lamportmutex.Lamport, n, t0, t1)
}

// algMsgsSample is msgsSample for a group running alg.
func algMsgsSample(s *Sample, alg lamportmutex.Algorithm, n int, t0, t1 tally) {
	entries, sent := t1.entries-t0.entries, t1.sent-t0.sent
	if entries == 0 {
		return
	}
	s.MsgsPerEntry = float64(sent) / float64(entries)
	s.MsgsExact = sent == algMsgs(alg, n)*entries
	if !s.MsgsExact {
		s.MsgsDetail = fmt.Sprintf("before: %v; after: %v", t0, t1)
	}
}

// uncontended measures Lock+Unlock at one peer while the others are idle.
func uncontended(kind string, n int, bud budget) (Sample, error) {
	return uncontendedAlg(kind, lamportmutex.Lamport, n, bud)
}

// withAlgorithm sets every peer's Config.Algorithm to alg.
func withAlgorithm(alg lamportmutex.Algorithm) func(int, lamportmutex.Config) lamportmutex.Config {
	return func(_ int, cfg lamportmutex.Config) lamportmutex.Config {
		cfg.Algorithm = alg
		return cfg
	}
}

// uncontendedAlg is uncontended for a group running alg.
func uncontendedAlg(kind string, alg lamportmutex.Algorithm, n int, bud budget) (_ Sample, err error) {
	c, err := newCluster(kind, n, withAlgorithm(alg))
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()
	mu := c.mus[0]
	cycle := func() error { return lockCycle(ctx, mu) }
	for m := bud.warmup().start(); m.next(); {
		if err := cycle(); err != nil {
			return Sample{}, err
		}
	}
	t0, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	var lat []time.Duration
	start := time.Now()
	for m := bud.start(); m.next(); {
		t0 := time.Now()
		if err := cycle(); err != nil {
			return Sample{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	s := latencySample(lat, time.Since(start))
	t1, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	algMsgsSample(&s, alg, n, t0, t1)
	return s, nil
}

// grant is one lock entry, logged inside the critical section.
type grant struct {
	peer int
	at   time.Time
}

// contended measures every peer looping Lock/Unlock at once.
func contended(kind string, n int, bud budget) (Sample, error) {
	return contendedAlg(kind, lamportmutex.Lamport, n, bud)
}

// contendedAlg is contended for a group running alg.
func contendedAlg(kind string, alg lamportmutex.Algorithm, n int, bud budget) (_ Sample, err error) {
	c, err := newCluster(kind, n, withAlgorithm(alg))
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()

	var (
		logMu sync.Mutex // uncontended: taken only inside the critical section
		log   []grant
	)
	phase := func(m *meter, record bool) error {
		g, ctx := errgroup.WithContext(ctx)
		for i, mu := range c.mus {
			g.Go(func() error {
				for m.next() {
					if _, err := mu.Lock(ctx); err != nil {
						return fmt.Errorf("peer %d: lock: %w", i, err)
					}
					if record {
						at := time.Now()
						logMu.Lock()
						log = append(log, grant{peer: i, at: at})
						logMu.Unlock()
					}
					if err := mu.Unlock(nil); err != nil {
						return fmt.Errorf("peer %d: unlock: %w", i, err)
					}
				}
				return nil
			})
		}
		return g.Wait()
	}
	if err := phase(bud.warmup().start(), false); err != nil {
		return Sample{}, err
	}
	t0, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	start := time.Now()
	if err := phase(bud.start(), true); err != nil {
		return Sample{}, err
	}
	window := time.Since(start)
	t1, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	entries := t1.entries - t0.entries
	s := Sample{Ops: int64(entries), Seconds: window.Seconds()}
	if entries > 0 {
		s.Rate = float64(entries) / window.Seconds()
		s.Handoff = window / time.Duration(entries)
	}
	var gaps time.Duration
	var k int
	for i := 1; i < len(log); i++ {
		if log[i].peer != log[i-1].peer {
			gaps += log[i].at.Sub(log[i-1].at)
			k++
		}
	}
	if k > 0 {
		s.GrantGap = gaps / time.Duration(k)
	}
	algMsgsSample(&s, alg, n, t0, t1)
	return s, nil
}

// lockCycle takes mu's lock and releases it with no payload.
func lockCycle(ctx context.Context, mu *lamportmutex.Mutex) error {
	if _, err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return mu.Unlock(nil)
}
