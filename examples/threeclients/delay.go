package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// delayTransport holds every message it is given for a fixed delay before
// passing it on, so that concurrency can be watched by eye. All messages
// wait the same time, so order per peer is kept. What it holds counts
// toward the queue bound of the Transport contract; a message the
// underlying transport refuses when it is due fails every later Send.
type delayTransport struct {
	lamportmutex.Transport
	delay time.Duration

	mu      sync.Mutex
	queue   []delayed
	held    map[string]int // bytes held, per peer
	failed  error
	closing bool
	wake    chan struct{} // buffered 1
	done    chan struct{}
	once    sync.Once
}

// delayBound is how many payload bytes a delayTransport holds per peer.
const delayBound = 8 << 20

type delayed struct {
	at   time.Time
	msgs []lamportmutex.Message // one Send's, all for one peer
}

func newDelayTransport(t lamportmutex.Transport, d time.Duration) *delayTransport {
	dt := &delayTransport{Transport: t, delay: d, held: map[string]int{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go dt.run()
	return dt
}

// Send queues msgs; they are passed on together after the delay.
func (dt *delayTransport) Send(msgs ...lamportmutex.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	to := msgs[0].To
	for _, msg := range msgs {
		if len(msg.Payload) > dt.MaxPayload() || msg.To != to {
			return dt.Transport.Send(msgs...) // refused there, with its error
		}
	}
	dt.mu.Lock()
	defer dt.mu.Unlock()
	switch {
	case dt.failed != nil:
		return dt.failed
	case dt.closing:
		return fmt.Errorf("delay: %w", lamportmutex.ErrClosed)
	}
	n := dt.held[to]
	for _, msg := range msgs {
		n += len(msg.Payload)
		if bound := delayBound; n > bound || msg.Kind == lamportmutex.Data && n > bound/2 {
			return fmt.Errorf("delay: %d bytes held for %s: %w", dt.held[to], to, lamportmutex.ErrQueueFull)
		}
	}
	dt.held[to] = n
	kept := slices.Clone(msgs) // the contract lets the caller reuse msgs and their payloads
	for i := range kept {
		kept[i].Payload = bytes.Clone(kept[i].Payload)
	}
	dt.queue = append(dt.queue, delayed{at: time.Now().Add(dt.delay), msgs: kept})
	dt.poke()
	return nil
}

// Flush waits until every held message is passed on, then flushes the
// underlying transport.
func (dt *delayTransport) Flush(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		dt.mu.Lock()
		n := len(dt.queue)
		dt.mu.Unlock()
		if n == 0 {
			return dt.Transport.Flush(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (dt *delayTransport) poke() {
	select {
	case dt.wake <- struct{}{}:
	default:
	}
}

// run passes messages on when due; once closing, it passes on what is left
// at once and returns.
func (dt *delayTransport) run() {
	defer close(dt.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		dt.mu.Lock()
		closing := dt.closing
		var d delayed
		wait := time.Hour
		if len(dt.queue) > 0 {
			d = dt.queue[0]
			wait = time.Until(d.at)
			if wait <= 0 || closing {
				dt.queue = dt.queue[1:]
				for _, m := range d.msgs {
					dt.held[m.To] -= len(m.Payload)
				}
			}
		}
		dt.mu.Unlock()
		switch {
		case d.at.IsZero() && closing:
			return
		case !d.at.IsZero() && (wait <= 0 || closing):
			if err := dt.Transport.Send(d.msgs...); err != nil {
				dt.mu.Lock()
				if dt.failed == nil {
					dt.failed = fmt.Errorf("delay: pass on %v: %w", d.msgs[0], err)
				}
				dt.mu.Unlock()
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-dt.wake:
		}
	}
}

// Close passes on every held message and stops the delay goroutine. It
// does not close the underlying transport, which its owner closes after it.
func (dt *delayTransport) Close(context.Context) error {
	dt.once.Do(func() {
		dt.mu.Lock()
		dt.closing = true
		dt.mu.Unlock()
		dt.poke()
	})
	<-dt.done
	return nil
}
