package main

import (
	"context"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// delayTransport holds every message it is given for a fixed delay before
// passing it on, so that concurrency can be watched by eye. All messages
// wait the same time, so order per peer is kept.
type delayTransport struct {
	lamportmutex.Transport
	delay time.Duration

	mu      sync.Mutex
	queue   []delayed
	closing bool
	wake    chan struct{} // buffered 1
	done    chan struct{}
	once    sync.Once
}

type delayed struct {
	at  time.Time
	msg lamportmutex.Message
}

func newDelayTransport(t lamportmutex.Transport, d time.Duration) *delayTransport {
	dt := &delayTransport{Transport: t, delay: d, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go dt.run()
	return dt
}

// Send queues msg; it is passed on after the delay.
func (dt *delayTransport) Send(ctx context.Context, msg lamportmutex.Message) error {
	dt.mu.Lock()
	dt.queue = append(dt.queue, delayed{at: time.Now().Add(dt.delay), msg: msg})
	dt.mu.Unlock()
	dt.poke()
	return nil
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
			}
		}
		dt.mu.Unlock()
		switch {
		case d.at.IsZero() && closing:
			return
		case !d.at.IsZero() && (wait <= 0 || closing):
			_ = dt.Transport.Send(context.Background(), d.msg)
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
// does not close the underlying transport, which its owner drains first.
func (dt *delayTransport) Close() error {
	dt.once.Do(func() {
		dt.mu.Lock()
		dt.closing = true
		dt.mu.Unlock()
		dt.poke()
	})
	<-dt.done
	return nil
}
