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
//
// What a peer can make it hold is bounded: it counts the bytes it holds
// (each message's payload plus msgOverhead), and offer refuses an
// application message (DATA) that would take it past limit. The
// algorithm's messages (push) are never refused. Under Lamport's algorithm
// there are a few per entry and per PeerUp (the Machine refuses a REQUEST
// from a peer whose previous one is queued, see Machine.Step), so they
// exceed the limit by at most that much; under Ricart-Agrawala a peer that
// floods REQUESTs while we are not requesting gets a REPLY for each.
type outbox struct {
	mu    sync.Mutex
	q     []Message
	bytes int // sum of size over q
	limit int
	wake  chan struct{} // buffered 1: the queue grew, or the owner is stopping
}

// msgOverhead is what a message is counted for beyond its payload: ids,
// clock, incarnation and framing.
const msgOverhead = 64

func newOutbox(limit int) *outbox { return &outbox{limit: limit, wake: make(chan struct{}, 1)} }

func size(msg Message) int { return len(msg.Payload) + msgOverhead }

// push queues msg.
func (o *outbox) push(msg Message) {
	o.mu.Lock()
	o.q = append(o.q, msg)
	o.bytes += size(msg)
	o.mu.Unlock()
	o.poke()
}

// offer queues msg unless that would take the outbox past its limit; it
// reports whether it did.
func (o *outbox) offer(msg Message) bool {
	o.mu.Lock()
	if o.bytes+size(msg) > o.limit {
		o.mu.Unlock()
		return false
	}
	o.q = append(o.q, msg)
	o.bytes += size(msg)
	o.mu.Unlock()
	o.poke()
	return true
}

// cancel queues a withdrawal (a RELEASE of a request never granted), unless
// that request's REQUEST is still unsent at the tail: then it removes the
// REQUEST instead and reports true. This keeps the outbox bounded while
// Lock calls are abandoned towards a peer that does not read.
func (o *outbox) cancel(withdrawal Message) bool {
	o.mu.Lock()
	n := len(o.q)
	if n > 0 && o.q[n-1].Kind == Request {
		o.bytes -= size(o.q[n-1])
		o.q = o.q[:n-1]
		o.mu.Unlock()
		return true
	}
	o.q = append(o.q, withdrawal)
	o.bytes += size(withdrawal)
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
			o.q[0] = Message{} // let the payload go
			o.q = o.q[1:]
			o.bytes -= size(msg)
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
