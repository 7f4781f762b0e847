package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// handoff measures the hand-off latency in a group of n peers: from the
// start of the holder's Unlock to the return of the waiting peer's Lock,
// both timestamps taken in this process. The waiter is already waiting
// when the holder unlocks: its Lock call is parked, its request heads the
// queue right behind the holder's, and every other peer's reply is in, so
// only the holder's RELEASE stands between it and the grant. Peers 1 and 2
// take turns; the others stay idle.
func handoff(kind string, n int, bud budget) (_ Sample, err error) {
	c, err := newCluster(kind, n, nil)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()

	holder, waiter := c.mus[0], c.mus[1]
	if _, err := holder.Lock(ctx); err != nil {
		return Sample{}, fmt.Errorf("lock: %w", err)
	}
	once := func() (time.Duration, error) {
		d, err := handOver(ctx, holder, waiter)
		holder, waiter = waiter, holder
		return d, err
	}
	for m := bud.warmup().start(); m.next(); {
		if _, err := once(); err != nil {
			return Sample{}, err
		}
	}
	if err := holder.Unlock(nil); err != nil {
		return Sample{}, fmt.Errorf("unlock: %w", err)
	}
	t0, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	if _, err := holder.Lock(ctx); err != nil {
		return Sample{}, fmt.Errorf("lock: %w", err)
	}
	s, err := timeEach(bud, once)
	if err != nil {
		return Sample{}, err
	}
	if err := holder.Unlock(nil); err != nil {
		return Sample{}, fmt.Errorf("unlock: %w", err)
	}
	t1, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	msgsSample(&s, n, t0, t1)
	return s, nil
}

// grantAt is the end of one Lock call.
type grantAt struct {
	at  time.Time
	err error
}

// handOver makes waiter wait for the lock that holder holds, then times
// holder's Unlock to waiter's grant. On return without error waiter holds
// the lock; on an error the waiting Lock has returned too.
func handOver(ctx context.Context, holder, waiter *lamportmutex.Mutex) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	granted := make(chan grantAt, 1)
	go func() {
		_, err := waiter.Lock(ctx)
		granted <- grantAt{at: time.Now(), err: err}
	}()
	if err := awaitWaiting(ctx, waiter); err != nil {
		cancel()
		g := <-granted
		return 0, errors.Join(err, g.err)
	}
	t0 := time.Now()
	if err := holder.Unlock(nil); err != nil {
		cancel()
		g := <-granted
		return 0, errors.Join(fmt.Errorf("unlock: %w", err), g.err)
	}
	g := <-granted
	if g.err != nil {
		return 0, fmt.Errorf("lock: %w", g.err)
	}
	return g.at.Sub(t0), nil
}

// awaitWaiting polls mu until its Lock waits only for the holder's
// release: a caller waits, its request is second in the queue, and no
// peer's later message is missing.
func awaitWaiting(ctx context.Context, mu *lamportmutex.Mutex) error {
	for {
		st := mu.State()
		if !st.Held && st.Waiting == 1 && len(st.Queue) == 2 && len(st.Missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the request to be queued: %w", ctx.Err())
		case <-time.After(20 * time.Microsecond):
		}
	}
}
