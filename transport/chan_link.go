package transport

import (
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// link is the one-way channel from one peer to another: a FIFO queue of
// messages waiting for their delay to pass, for a fault to end or for the
// receiver to start, delivered one at a time by the link's own goroutine.
// That goroutine is the only one that calls the receiver's deliver for
// this sender, so the deliveries of one pair never overlap and keep the
// queue's order; it holds no lock while it calls deliver.
//
// Besides messages the queue holds markers the network puts there: the
// PeerUp of a new incarnation (of either end) and PeerDown. A PeerDown for
// a cut goes to the head of the queue (the receiver hears of the cut
// before the messages it holds); one for a sender that closed goes to the
// tail (after what it sent).
type link struct {
	net  *ChanNetwork
	from int
	to   int
	wake chan struct{} // capacity 1: "state may have changed"

	mu       sync.Mutex
	src      *ChanEndpoint // the sender's current incarnation
	dst      *ChanEndpoint // the receiver's current incarnation
	queue    []queued
	inflight queued // the item being delivered; seq 0 and no marker when none
	busy     bool   // the goroutine is delivering inflight
	bytes    int    // encoded bytes of the messages queued or in flight
	sent     uint64 // sequence number of the last message accepted
	blocked  bool   // held by a Partition, a Disconnect or a quarantine of the receiver
	discard  bool   // the receiver quarantined the sender's incarnation: drop what it sends
	dead     bool   // the receiver's incarnation ended or is quarantined: Flush need not wait
	// epoch changes whenever either end restarts, so that the goroutine
	// does not apply what it learned delivering to an ended incarnation.
	epoch uint64
	// PeerDown bookkeeping: conn is whether the link was connected (open
	// and its sender up) when last looked at; upDelivered whether the
	// current sender incarnation's PeerUp reached the current receiver
	// incarnation; armed whether a cut now owes the receiver a PeerDown
	// (after each PeerUp or reconnect, until one is queued).
	conn        bool
	upDelivered bool
	armed       bool
	rng         *rand.Rand
	progress    chan struct{} // closed when an item settles or the state changes; nil if nobody waits
}

// queued is one item on a link: a message (seq > 0) or a marker (PeerUp or
// PeerDown, seq 0). at is when it may be delivered (zero: at once); bypass
// lets a marker at the head through while the link is held.
type queued struct {
	msg    lamportmutex.Message
	seq    uint64
	size   int
	at     time.Time
	bypass bool
	epoch  uint64
}

func newLink(n *ChanNetwork, from, to int) *link {
	h := fnv.New64a()
	h.Write([]byte(n.ids[from]))
	h.Write([]byte{0})
	h.Write([]byte(n.ids[to]))
	return &link{
		net:  n,
		from: from,
		to:   to,
		wake: make(chan struct{}, 1),
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

// signal wakes the Flushes waiting on the link. l.mu is held.
func (l *link) signal() {
	if l.progress != nil {
		close(l.progress)
		l.progress = nil
	}
}

// enqueue queues msgs (their msg and size set), from incarnation e, in
// order. It never waits: it refuses them all, queuing nothing, if one would
// pass the link's bound.
func (l *link) enqueue(e *ChanEndpoint, msgs []queued) error {
	limit := l.net.queueBytes
	l.mu.Lock()
	if l.src != e || e.isClosed() {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.discard {
		l.mu.Unlock()
		return nil // as if on a connection the receiver closed
	}
	held := l.bytes
	for _, q := range msgs {
		if held+q.size > limit {
			l.mu.Unlock()
			return &queueFullError{queued: held, size: q.size, limit: limit}
		}
		if q.msg.Kind == lamportmutex.Data && held+q.size > limit/2 {
			l.mu.Unlock()
			return &queueFullError{queued: held, size: q.size, limit: limit / 2, data: true}
		}
		held += q.size
	}
	wake := !l.busy && len(l.queue) == 0
	for _, q := range msgs {
		l.bytes += q.size
		l.sent++
		q.seq, q.epoch = l.sent, l.epoch
		if d := l.delay(q.msg); d > 0 {
			q.at = time.Now().Add(d)
		}
		l.queue = append(l.queue, q)
	}
	l.mu.Unlock()
	if wake {
		l.kick()
	}
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

// marker returns a PeerUp or PeerDown from the link's sender. l.mu is held.
func (l *link) marker(kind lamportmutex.Kind, inc uint64, bypass bool) queued {
	return queued{msg: lamportmutex.Message{
		Kind: kind, From: l.net.ids[l.from], To: l.net.ids[l.to], Incarnation: inc,
	}, bypass: bypass, epoch: l.epoch}
}

// owePeerDown queues the PeerDown the receiver is owed now that the link
// is not connected: at the head for a cut, so that it comes before the
// messages held, unless one is there already; at the tail for a sender
// that closed, after what it sent. l.mu is held.
func (l *link) owePeerDown() {
	l.armed = false
	down := l.marker(lamportmutex.PeerDown, l.src.inc, l.blocked)
	if !l.blocked {
		l.queue = append(l.queue, down)
		return
	}
	if len(l.queue) > 0 && l.queue[0].msg.Kind == lamportmutex.PeerDown {
		return
	}
	l.queue = append(l.queue, queued{})
	copy(l.queue[1:], l.queue)
	l.queue[0] = down
}

// dropQueued drops the queued messages (and the markers, unless keepDown
// and the marker is a PeerDown) and returns how many messages it dropped.
// l.mu is held.
func (l *link) dropQueued(keepDown bool) int {
	n := 0
	kept := l.queue[:0]
	for _, q := range l.queue {
		switch {
		case q.seq > 0:
			n++
			l.bytes -= q.size
		case keepDown && q.msg.Kind == lamportmutex.PeerDown:
			kept = append(kept, q)
		}
	}
	clear(l.queue[len(kept):])
	l.queue = kept
	l.signal()
	return n
}

// setState records whether the link is held and whether it is connected,
// queuing a PeerDown on a cut. l.mu is held.
func (l *link) setState(blocked, discard, dead bool) {
	l.blocked, l.discard, l.dead = blocked, discard, dead
	if discard {
		l.dropQueued(false)
		l.armed = false
	}
	conn := !blocked && !l.src.isClosed()
	switch {
	case l.conn && !conn && l.armed:
		l.owePeerDown()
	case !l.conn && conn && l.upDelivered && !discard:
		l.armed = true // a reconnect
	}
	l.conn = conn
	l.signal()
}

// settled reports whether every message up to seq has been delivered or
// dropped. l.mu is held.
func (l *link) settled(seq uint64) bool {
	if l.busy && l.inflight.seq > 0 && l.inflight.seq <= seq {
		return false
	}
	for _, q := range l.queue {
		if q.seq > 0 {
			return q.seq > seq
		}
	}
	return true
}

// run delivers the queue until the network closes.
func (l *link) run() {
	defer l.net.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		wait, dst, ok := l.next()
		if ok {
			l.hand(dst)
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-tc:
		case <-l.wake:
		case <-l.net.done:
			return
		}
		if wait > 0 && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// next takes the head of the queue into inflight if it can be delivered
// now, and returns its receiver. Otherwise it returns how long until the
// head is due, or 0 if the link must wait for a kick (empty, held, or the
// receiver not started or closed).
func (l *link) next() (time.Duration, *ChanEndpoint, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.net.done:
		return 0, nil, false
	default:
	}
	if len(l.queue) == 0 || !l.dst.ready() {
		return 0, nil, false
	}
	h := l.queue[0]
	if l.blocked && !h.bypass {
		return 0, nil, false
	}
	if !h.at.IsZero() {
		if now := time.Now(); h.at.After(now) {
			return h.at.Sub(now), nil, false
		}
	}
	l.queue[0] = queued{}
	l.queue = l.queue[1:]
	l.inflight, l.busy = h, true
	return 0, l.dst, true
}

// hand delivers inflight to dst, with no lock held, then settles it.
func (l *link) hand(dst *ChanEndpoint) {
	it := l.inflight // only this goroutine writes inflight
	delivered := false
	if deliver := dst.enter(); deliver != nil {
		if h := l.net.opts.OnDeliver; h != nil {
			h(it.msg)
		}
		deliver(it.msg)
		dst.exit()
		delivered = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bytes -= it.size
	l.inflight, l.busy = queued{}, false
	if delivered && it.msg.Kind == lamportmutex.PeerUp && it.epoch == l.epoch {
		l.upDelivered, l.armed = true, true
		if !l.conn {
			l.owePeerDown()
		}
	}
	l.signal()
}
