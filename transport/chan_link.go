package transport

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// link is the one-way channel from one peer to another: a FIFO queue of
// messages waiting for their delay to pass or for a fault to end, drained
// into the receiver's inbox by the link's goroutine. A message that can be
// delivered at once, with nothing ahead of it, skips the queue.
type link struct {
	net  *ChanNetwork
	from int
	to   int
	wake chan struct{} // capacity 1: "state may have changed"

	mu      sync.Mutex
	src     *ChanEndpoint // the sender's current incarnation
	dst     *inbox        // the receiver's current incarnation's inbox
	queue   []queued
	blocked bool // held by a Partition, a Disconnect or a quarantine of the receiver
	discard bool // the receiver quarantined the sender's incarnation: drop what it sends
	rng     *rand.Rand
	// pending counts messages sent on the link and not yet taken from the
	// receiver's Receive channel, for ChanOptions.QueueLimit. epoch changes
	// when the receiver restarts, so that receipts by a dead incarnation
	// are not counted.
	pending int
	epoch   uint64
	space   chan struct{} // closed when pending drops; nil if nobody waits
}

// queued is a message on a link; at is when it may be delivered (zero: at
// once). peerUp marks a PeerUp put on the link by Restart, which does not
// count against QueueLimit.
type queued struct {
	msg    lamportmutex.Message
	at     time.Time
	peerUp bool
}

func newLink(n *ChanNetwork, from, to int, src *ChanEndpoint, dst *inbox) *link {
	h := fnv.New64a()
	h.Write([]byte(n.ids[from]))
	h.Write([]byte{0})
	h.Write([]byte(n.ids[to]))
	return &link{
		net:  n,
		from: from,
		to:   to,
		wake: make(chan struct{}, 1),
		src:  src,
		dst:  dst,
		rng:  rand.New(rand.NewPCG(uint64(n.opts.Seed), h.Sum64())),
	}
}

// kick wakes the link's goroutine.
func (l *link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// enqueue queues msg from incarnation e, waiting for room if the link is
// full.
func (l *link) enqueue(ctx context.Context, e *ChanEndpoint, msg lamportmutex.Message) error {
	limit := l.net.opts.QueueLimit
	l.mu.Lock()
	for {
		if l.src != e || e.closed.Load() {
			l.mu.Unlock()
			return ErrClosed
		}
		if limit <= 0 || l.pending < limit {
			break
		}
		if l.space == nil {
			l.space = make(chan struct{})
		}
		space := l.space
		l.mu.Unlock()
		if err := l.net.waitSpace(ctx, e, space); err != nil {
			return err
		}
		l.mu.Lock()
	}
	if l.discard {
		l.mu.Unlock()
		return nil // as if on a connection the receiver closed
	}
	l.pending++
	var at time.Time
	if d := l.delay(msg); d > 0 {
		at = time.Now().Add(d)
	}
	if len(l.queue) == 0 && !l.blocked && at.IsZero() &&
		l.dst.push(inItem{msg: msg, l: l, epoch: l.epoch, inc: e.inc}) {
		l.mu.Unlock()
		return nil
	}
	l.queue = append(l.queue, queued{msg: msg, at: at})
	l.mu.Unlock()
	l.kick()
	return nil
}

// delay returns msg's delay. l.mu is held.
func (l *link) delay(msg lamportmutex.Message) time.Duration {
	if f := l.net.opts.Delay; f != nil {
		return f(msg)
	}
	if maxD := l.net.maxDelay.Load(); maxD > 0 {
		return time.Duration(l.rng.Int64N(maxD + 1))
	}
	return 0
}

// received records that a message of the given epoch was taken from the
// receiver's Receive channel.
func (l *link) received(epoch uint64) {
	if l.net.opts.QueueLimit <= 0 {
		return
	}
	l.mu.Lock()
	if epoch == l.epoch && l.pending > 0 {
		l.pending--
		l.signalSpace()
	}
	l.mu.Unlock()
}

// signalSpace wakes the Sends waiting for room. l.mu is held.
func (l *link) signalSpace() {
	if l.space != nil {
		close(l.space)
		l.space = nil
	}
}

// dropQueued drops the queued messages and returns how many. l.mu is held.
func (l *link) dropQueued() int {
	n := 0
	for _, q := range l.queue {
		if !q.peerUp {
			n++
		}
	}
	clear(l.queue)
	l.queue = l.queue[:0]
	l.pending -= n
	if l.pending < 0 {
		l.pending = 0
	}
	l.signalSpace()
	return n
}

// run delivers queued messages until the network closes.
func (l *link) run() {
	defer l.net.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		wait := l.deliverReady()
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-l.wake:
			case <-l.net.done:
				timer.Stop()
				return
			}
			timer.Stop()
			continue
		}
		select {
		case <-l.wake:
		case <-l.net.done:
			return
		}
	}
}

// deliverReady moves every deliverable message at the head of the queue to
// the receiver's inbox. It returns how long until the head is due, or 0 if
// the link must wait for a kick (empty, held, or receiver down).
func (l *link) deliverReady() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var now time.Time
	for len(l.queue) > 0 && !l.blocked {
		h := &l.queue[0]
		if !h.at.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			if h.at.After(now) {
				return h.at.Sub(now)
			}
		}
		it := inItem{msg: h.msg, l: l, epoch: l.epoch, inc: l.src.inc}
		if h.peerUp {
			it.l, it.inc = nil, h.msg.Incarnation
		}
		if !l.dst.push(it) {
			return 0 // receiver is down; Restart kicks us
		}
		*h = queued{}
		l.queue = l.queue[1:]
	}
	return 0
}
