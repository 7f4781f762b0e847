package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// ChanEndpoint is one incarnation of a peer on a ChanNetwork. It implements
// lamportmutex.Transport.
type ChanEndpoint struct {
	net     *ChanNetwork
	id      string
	idx     int
	in      *inbox
	inc     uint64
	closed  atomic.Bool
	started atomic.Bool
	pumped  chan struct{} // closed when the delivery goroutine returns
}

var _ lamportmutex.Transport = (*ChanEndpoint)(nil)

// ID returns the peer's id.
func (e *ChanEndpoint) ID() string { return e.id }

// Incarnation returns the endpoint's incarnation: 1, then one more after
// each Restart of its peer.
func (e *ChanEndpoint) Incarnation() uint64 { return e.inc }

// Send queues msg for delivery to msg.To. msg goes through the wire codec:
// the receiver gets a decoded copy, so the caller may reuse msg.Payload as
// soon as Send returns. Send fails with ErrWrongSender if msg.From is not
// e.ID(), with ErrUnknownPeer if msg.To is not another member, with
// ErrUnsendable for a PeerUp or undefined kind, with ErrClosed after Close
// (of the endpoint or the network, or after a Restart of this peer), and
// with ctx's error, without queuing, if ctx is already done. When
// ChanOptions.QueueLimit is set and the link to msg.To is full, Send waits
// for room until ctx is done; otherwise it never blocks.
func (e *ChanEndpoint) Send(msg lamportmutex.Message) error {
	return e.send(context.Background(), msg)
}

// chanMaxPayload is the largest payload a ChanEndpoint carries.
const chanMaxPayload = 16 << 20

// MaxPayload returns the largest payload Send accepts.
func (e *ChanEndpoint) MaxPayload() int { return chanMaxPayload }

// Start begins delivery to deliver, on a goroutine of the endpoint's.
func (e *ChanEndpoint) Start(deliver func(lamportmutex.Message)) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if !e.started.CompareAndSwap(false, true) {
		return fmt.Errorf("transport: endpoint %q started twice", e.id)
	}
	e.pumped = make(chan struct{})
	go func() {
		defer close(e.pumped)
		for m := range e.in.out {
			deliver(m)
		}
	}()
	return nil
}

// Flush returns at once: the in-process links hand messages over in
// memory.
func (e *ChanEndpoint) Flush(ctx context.Context) error { return ctx.Err() }

func (e *ChanEndpoint) send(ctx context.Context, msg lamportmutex.Message) error {
	if e.closed.Load() {
		return fmt.Errorf("transport: send %v: %w", msg, ErrClosed)
	}
	if msg.From != e.id {
		return fmt.Errorf("transport: send %v on endpoint %q: %w", msg, e.id, ErrWrongSender)
	}
	to, ok := e.net.index[msg.To]
	if !ok || to == e.idx {
		return fmt.Errorf("transport: send %v: %w", msg, ErrUnknownPeer)
	}
	if !msg.Kind.Valid() || msg.Kind == lamportmutex.PeerUp || msg.Kind == lamportmutex.PeerDown {
		return fmt.Errorf("transport: send %v: %w", msg, ErrUnsendable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("transport: send %v: %w", msg, err)
	}
	b, err := marshalMessage(msg)
	if err != nil {
		return fmt.Errorf("transport: send: %w", err)
	}
	wire, err := unmarshalMessage(b)
	if err != nil {
		return fmt.Errorf("transport: send %v: %w", msg, err)
	}
	if err := e.net.links[e.idx][to].enqueue(ctx, e, wire); err != nil {
		return fmt.Errorf("transport: send %v: %w", msg, err)
	}
	if h := e.net.opts.OnSend; h != nil {
		h(wire)
	}
	return nil
}

// Receive returns the endpoint's inbound channel. It is the same channel
// for the endpoint's whole life and is closed by Close. It first carries a
// PeerUp message from every other peer.
func (e *ChanEndpoint) Receive() <-chan lamportmutex.Message { return e.in.out }

// Close takes the peer down: Send fails with ErrClosed, the Receive channel
// is closed (once Close returns) and messages not yet received are dropped.
// Messages this endpoint already sent are still delivered. Messages other
// peers send to this peer are held until Restart, which drops them. Close
// is safe to call more than once and always returns nil.
func (e *ChanEndpoint) Close(ctx context.Context) error {
	e.close()
	if e.started.Load() {
		<-e.pumped
	}
	return nil
}

func (e *ChanEndpoint) close() {
	e.closed.Store(true)
	e.in.close()
}

// inItem is one message in an inbox. l and epoch identify the link it came
// on, for the link's QueueLimit accounting; l is nil for PeerUp.
type inItem struct {
	msg   lamportmutex.Message
	l     *link
	epoch uint64
	inc   uint64 // the sender's incarnation
}

// inbox is an endpoint's unbounded inbound queue, drained into the Receive
// channel by one pump goroutine.
type inbox struct {
	onDeliver func(lamportmutex.Message)
	out       chan lamportmutex.Message
	wake      chan struct{} // capacity 1: "items may be non-empty"
	done      chan struct{} // closed by close
	exited    chan struct{} // closed when pump returns
	closeOnce sync.Once

	mu     sync.Mutex
	items  []inItem
	closed bool
}

func newInbox(onDeliver func(lamportmutex.Message)) *inbox {
	return &inbox{
		onDeliver: onDeliver,
		out:       make(chan lamportmutex.Message),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
}

// push appends it, unless the inbox is closed; it reports whether it did.
func (in *inbox) push(it inItem) bool {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return false
	}
	in.items = append(in.items, it)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return true
}

// close discards the queued items, stops the pump and waits for it; the
// Receive channel is closed when close returns.
func (in *inbox) close() {
	in.closeOnce.Do(func() {
		in.mu.Lock()
		in.closed = true
		in.items = nil
		in.mu.Unlock()
		close(in.done)
	})
	<-in.exited
}

// pump hands queued items to the Receive channel in order until close.
func (in *inbox) pump() {
	defer close(in.exited)
	defer close(in.out)
	for {
		in.mu.Lock()
		if in.closed {
			in.mu.Unlock()
			return
		}
		if len(in.items) == 0 {
			in.items = in.items[:0]
			in.mu.Unlock()
			select {
			case <-in.wake:
				continue
			case <-in.done:
				return
			}
		}
		it := in.items[0]
		in.items[0] = inItem{}
		in.items = in.items[1:]
		in.mu.Unlock()
		if in.onDeliver != nil {
			in.onDeliver(it.msg)
		}
		select {
		case in.out <- it.msg:
			if it.l != nil {
				it.l.received(it.epoch)
			}
		case <-in.done:
			return
		}
	}
}

// Quarantine implements lamportmutex.Transport, in memory: from then on,
// until peer restarts, nothing of peer's incarnation inc reaches e (the
// network numbers incarnations itself, so no other one can be forged; a
// later Quarantine of the same peer replaces this one).
// What they sent and e has not yet received is dropped (a message the
// inbox was already handing to Receive may still arrive; the Mutex ignores
// it), and what they send later is dropped as on a closed connection. What
// e sends to such an incarnation is held on the link; Restart(peer) drops
// it, as it drops everything sent to a dead incarnation, and the new
// incarnation comes up with PeerUp as after any restart. A Restart of e's
// own peer forgets e's quarantines. It logs one line at Warn, never blocks
// on the network, and does nothing for an unknown peer, e itself, or after
// Close.
func (e *ChanEndpoint) Quarantine(peer string, inc uint64, cause error) {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	j, ok := n.index[peer]
	if n.closed || e.closed.Load() || n.endpoints[e.idx] != e || !ok || j == e.idx {
		return
	}
	k := [2]int{e.idx, j}
	n.quarantined[k] = inc
	n.updateBlocked(j, e.idx)
	n.updateBlocked(e.idx, j)
	dropped := e.in.drop(func(it inItem) bool { return it.msg.From == peer && it.inc == inc })
	n.log.Warn("chan network: peer quarantined", "self", e.id, "peer", printable(peer), "incarnation", inc, "dropped", dropped, "cause", cause)
}

// drop removes the queued items for which match holds and returns how many.
func (in *inbox) drop(match func(inItem) bool) int {
	in.mu.Lock()
	var gone []inItem
	kept := in.items[:0]
	for _, it := range in.items {
		if match(it) {
			gone = append(gone, it)
		} else {
			kept = append(kept, it)
		}
	}
	clear(in.items[len(kept):])
	in.items = kept
	in.mu.Unlock()
	for _, it := range gone { // outside in.mu: a link takes its mu, then in.mu
		if it.l != nil {
			it.l.received(it.epoch)
		}
	}
	return len(gone)
}
