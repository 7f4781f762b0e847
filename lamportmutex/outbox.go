package lamportmutex

import (
	"context"
	"errors"
	"sync"
)

// outbox holds the messages the driver has produced for one peer until the
// Transport takes them, so that the driver never waits on a Transport
// whose queue to that peer is full (the contract lets Send block then).
// One goroutine per outbox hands the messages over, in order.
type outbox struct {
	mu   sync.Mutex
	q    []Message
	wake chan struct{} // buffered 1: the queue grew, or the owner is stopping
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

// push queues msg.
func (o *outbox) push(msg Message) {
	o.mu.Lock()
	o.q = append(o.q, msg)
	o.mu.Unlock()
	o.poke()
}

// cancel queues a withdrawal (a RELEASE of a request never granted), unless
// that request's REQUEST is still unsent at the tail: then it removes the
// REQUEST instead and reports true. This keeps the outbox bounded while
// Lock calls are abandoned towards a peer that does not read.
func (o *outbox) cancel(withdrawal Message) bool {
	o.mu.Lock()
	n := len(o.q)
	if n > 0 && o.q[n-1].Kind == Request {
		o.q = o.q[:n-1]
		o.mu.Unlock()
		return true
	}
	o.q = append(o.q, withdrawal)
	o.mu.Unlock()
	o.poke()
	return false
}

func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// pump hands queued messages to send until stop is closed and the queue is
// empty, or until send fails. A failure other than ctx's end is reported
// through fail.
func (o *outbox) pump(ctx context.Context, stop <-chan struct{}, send func(context.Context, Message) error, fail func(Message, error)) {
	for {
		o.mu.Lock()
		var msg Message
		have := len(o.q) > 0
		if have { // taken off before Send, so push never cancels it
			msg = o.q[0]
			o.q = o.q[1:]
		}
		o.mu.Unlock()
		if !have {
			select {
			case <-o.wake:
				continue
			case <-stop:
				o.mu.Lock()
				empty := len(o.q) == 0
				o.mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		if err := send(ctx, msg); err != nil {
			if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
				fail(msg, err)
			}
			return
		}
	}
}
