package main

import (
	"context"
	"fmt"
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
	at  time.Time
	msg lamportmutex.Message
}

func newDelayTransport(t lamportmutex.Transport, d time.Duration) *delayTransport {
	dt := &delayTransport{Transport: t, delay: d, held: map[string]int{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go dt.run()
	return dt
}

// Send queues msg; it is passed on after the delay.
func (dt *delayTransport) Send(msg lamportmutex.Message) error {
	if len(msg.Payload) > dt.MaxPayload() {
		return dt.Transport.Send(msg) // refused there, with its error
	}
	dt.mu.Lock()
	defer dt.mu.Unlock()
	switch bound := delayBound; {
	case dt.failed != nil:
		return dt.failed
	case dt.closing:
		return fmt.Errorf("delay: %w", lamportmutex.ErrClosed)
	case msg.Kind == lamportmutex.Data && dt.held[msg.To]+len(msg.Payload) > bound/2,
		dt.held[msg.To]+len(msg.Payload) > bound:
		return fmt.Errorf("delay: %d bytes held for %s: %w", dt.held[msg.To], msg.To, lamportmutex.ErrQueueFull)
	}
	dt.held[msg.To] += len(msg.Payload)
	dt.queue = append(dt.queue, delayed{at: time.Now().Add(dt.delay), msg: msg})
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
				dt.held[d.msg.To] -= len(d.msg.Payload)
			}
		}
		dt.mu.Unlock()
		switch {
		case d.at.IsZero() && closing:
			return
		case !d.at.IsZero() && (wait <= 0 || closing):
			if err := dt.Transport.Send(d.msg); err != nil {
				dt.mu.Lock()
				if dt.failed == nil {
					dt.failed = fmt.Errorf("delay: pass on %v: %w", d.msg, err)
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
