package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// ChanEndpoint is one incarnation of a peer on a ChanNetwork. It implements
// lamportmutex.Transport.
type ChanEndpoint struct {
	net    *ChanNetwork
	id     string
	idx    int
	inc    uint64
	closed atomic.Bool
	done   chan struct{} // closed by stop

	mu      sync.Mutex // guards the fields below; taken after a link's mu
	deliver func(lamportmutex.Message)
	active  int           // deliver calls running
	idle    chan struct{} // closed when active drops to 0 after stop; nil if nobody waits
}

var _ lamportmutex.Transport = (*ChanEndpoint)(nil)

// ID returns the peer's id.
func (e *ChanEndpoint) ID() string { return e.id }

// Incarnation returns the endpoint's incarnation: 1, then one more after
// each Restart of its peer.
func (e *ChanEndpoint) Incarnation() uint64 { return e.inc }

// MaxPayload returns the largest payload Send accepts: the smaller of
// 4 MiB and a quarter of ChanOptions.QueueBytes.
func (e *ChanEndpoint) MaxPayload() int { return e.net.maxPayload }

// Start begins delivery to deliver. Each link into the endpoint calls
// deliver on its own goroutine: calls for one sender never overlap and
// come in its order, calls for different senders may run at once. The
// first call for each sender is its PeerUp. Start fails after Close and
// when called twice.
func (e *ChanEndpoint) Start(deliver func(lamportmutex.Message)) error {
	if deliver == nil {
		return fmt.Errorf("transport: endpoint %q: nil deliver", e.id)
	}
	e.mu.Lock()
	switch {
	case e.closed.Load():
		e.mu.Unlock()
		return fmt.Errorf("transport: start %q: %w", e.id, ErrClosed)
	case e.deliver != nil:
		e.mu.Unlock()
		return fmt.Errorf("transport: endpoint %q started twice", e.id)
	}
	e.deliver = deliver
	e.mu.Unlock()
	for j, from := range e.net.links {
		if j != e.idx {
			from[e.idx].kick()
		}
	}
	return nil
}

// Send queues msgs, all for one peer, for delivery in order, and returns;
// it never blocks. Each message goes through the wire codec: the receiver
// gets a decoded copy, so the caller may reuse a Payload as soon as Send
// returns. Send queues all of msgs or none. It refuses them: when a message
// would take the link to its peer past ChanOptions.QueueBytes, or a Data
// message past half of it (wrapping lamportmutex.ErrQueueFull); for a
// payload above MaxPayload (wrapping lamportmutex.ErrPayloadTooLarge); a
// message whose From is not e.ID() (ErrWrongSender), whose To is not
// another member (ErrUnknownPeer) or not the same as the others'
// (ErrMixedPeers), or of a kind peers do not send (ErrUnsendable); and
// after Close, of the endpoint or the network, or after a Restart of this
// peer (ErrClosed). Messages to an incarnation that quarantined this one
// are dropped, as on a connection the receiver closed.
func (e *ChanEndpoint) Send(msgs ...lamportmutex.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if e.closed.Load() {
		return fmt.Errorf("transport: send %v: %w", msgs[0], ErrClosed)
	}
	to, ok := e.net.index[msgs[0].To]
	if !ok || to == e.idx {
		return fmt.Errorf("transport: send %v: %w", msgs[0], ErrUnknownPeer)
	}
	wire := make([]queued, 0, len(msgs))
	for _, msg := range msgs {
		q, err := e.encode(msg, msgs[0].To)
		if err != nil {
			return fmt.Errorf("transport: send %v: %w", msg, err)
		}
		wire = append(wire, q)
	}
	if err := e.net.links[e.idx][to].enqueue(e, wire); err != nil {
		return fmt.Errorf("transport: send %v: %w", msgs[0], err)
	}
	if h := e.net.opts.OnSend; h != nil {
		for _, q := range wire {
			h(q.msg)
		}
	}
	return nil
}

// encode checks msg, one of a Send to peer to, and returns it as the
// receiver will get it, with its size on the wire.
func (e *ChanEndpoint) encode(msg lamportmutex.Message, to string) (queued, error) {
	switch {
	case msg.From != e.id:
		return queued{}, fmt.Errorf("on endpoint %q: %w", e.id, ErrWrongSender)
	case msg.To != to:
		return queued{}, fmt.Errorf("%w: %q and %q", ErrMixedPeers, to, msg.To)
	case !msg.Kind.Valid() || msg.Kind == lamportmutex.PeerUp || msg.Kind == lamportmutex.PeerDown:
		return queued{}, ErrUnsendable
	case len(msg.Payload) > e.net.maxPayload:
		return queued{}, fmt.Errorf("payload above %d bytes: %w", e.net.maxPayload, lamportmutex.ErrPayloadTooLarge)
	}
	b, err := marshalMessage(msg)
	if err != nil {
		return queued{}, err
	}
	wire, err := unmarshalMessage(b)
	if err != nil {
		return queued{}, err
	}
	return queued{msg: wire, size: len(b)}, nil
}

// queueFullError is Send's refusal of a message that does not fit its
// link's bound.
type queueFullError struct {
	queued, size, limit int
	data                bool
}

func (q *queueFullError) Error() string {
	bound := "bound"
	if q.data {
		bound = "bound for data (half the queue)"
	}
	return fmt.Sprintf("%d bytes queued, %d more would pass the %s of %d bytes: %v",
		q.queued, q.size, bound, q.limit, lamportmutex.ErrQueueFull)
}

func (q *queueFullError) Unwrap() error { return lamportmutex.ErrQueueFull }

// Flush waits until every message Send accepted before the call has been
// delivered (its receiver's deliver returned), or can no longer be: its
// receiver's incarnation ended (it closed or restarted) or this endpoint
// quarantined it. It returns an error wrapping ctx's if ctx ends first, and
// ErrClosed after Close. Messages held by a fault or for a receiver not yet
// started are waited for.
func (e *ChanEndpoint) Flush(ctx context.Context) error {
	if e.closed.Load() {
		return fmt.Errorf("transport: flush %q: %w", e.id, ErrClosed)
	}
	links := e.net.links[e.idx]
	targets := make([]uint64, len(links))
	for j, l := range links {
		if l == nil {
			continue
		}
		l.mu.Lock()
		targets[j] = l.sent
		l.mu.Unlock()
	}
	for j, l := range links {
		if l == nil {
			continue
		}
		for {
			l.mu.Lock()
			if l.dead || l.settled(targets[j]) {
				l.mu.Unlock()
				break
			}
			if l.progress == nil {
				l.progress = make(chan struct{})
			}
			progress := l.progress
			l.mu.Unlock()
			select {
			case <-progress:
			case <-ctx.Done():
				return fmt.Errorf("transport: flush %q: to %q: %w", e.id, e.net.ids[j], ctx.Err())
			case <-e.done:
				return fmt.Errorf("transport: flush %q: %w", e.id, ErrClosed)
			}
		}
	}
	return nil
}

// Quarantine implements lamportmutex.Transport, in memory: from then on,
// until peer restarts, nothing of peer's incarnation inc reaches e (the
// network numbers incarnations itself, so no other one can be forged; a
// later Quarantine of the same peer replaces this one). What that
// incarnation sent and e has not yet been handed is dropped (a message
// being delivered at that moment still arrives; the Mutex ignores it), and
// what it sends later is dropped as on a closed connection. What e held
// for it is dropped; what e sends it later is held, and Restart(peer)
// drops it, as it drops everything sent to a dead incarnation; the new
// incarnation comes up with PeerUp as after any restart. The quarantined
// incarnation receives PeerDown(e). A Restart of e's own peer forgets e's
// quarantines. It logs one line at Warn, never blocks, and does nothing
// for an unknown peer, e itself, or after Close.
func (e *ChanEndpoint) Quarantine(peer string, inc uint64, cause error) {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	j, ok := n.index[peer]
	if n.closed || e.closed.Load() || n.endpoints[e.idx] != e || !ok || j == e.idx {
		return
	}
	n.quarantined[[2]int{e.idx, j}] = inc
	dropped := 0
	if n.incs[j] == inc {
		out := n.links[e.idx][j]
		out.mu.Lock()
		dropped = out.dropQueued(true)
		out.mu.Unlock()
	}
	n.updateBlocked(j, e.idx) // drops what peer's incarnation sent
	n.updateBlocked(e.idx, j)
	n.log.Warn("chan network: peer quarantined", "self", e.id, "peer", peer, "incarnation", inc,
		"dropped_to", dropped, "cause", cause)
}

// Close flushes within ctx (see Flush), then takes the peer down: Send
// fails with ErrClosed, and no deliver call runs once Close returns (so
// Close must not be called from deliver). Messages this endpoint already
// sent are still delivered, then its peers receive PeerDown. Messages other
// peers send to this peer are held until Restart, which drops them. If ctx
// ends before the flush is done, Close still closes, and returns an error
// wrapping ctx's. A second Close returns nil.
func (e *ChanEndpoint) Close(ctx context.Context) error {
	if e.closed.Load() {
		return nil
	}
	ferr := e.Flush(ctx)
	idle := e.net.closeEndpoint(e)
	if idle != nil {
		<-idle
	}
	if ferr != nil && !errors.Is(ferr, ErrClosed) {
		return fmt.Errorf("transport: close %q: what was sent is not all delivered: %w", e.id, ferr)
	}
	return nil
}

// closeEndpoint closes e and updates its links; it returns a channel
// closed once no deliver call to e runs, or nil if none does.
func (n *ChanNetwork) closeEndpoint(e *ChanEndpoint) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	idle := e.stop()
	if n.closed || n.endpoints[e.idx] != e {
		return idle
	}
	for j := range n.ids {
		if j != e.idx {
			n.updateBlocked(e.idx, j)
			n.updateBlocked(j, e.idx)
		}
	}
	n.log.Debug("chan network: endpoint closed", "peer", e.id, "incarnation", e.inc)
	return idle
}

// isClosed reports whether the endpoint was closed.
func (e *ChanEndpoint) isClosed() bool { return e.closed.Load() }

// ready reports whether deliveries to the endpoint may start.
func (e *ChanEndpoint) ready() bool {
	if e.closed.Load() {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deliver != nil
}

// stop closes the endpoint: no deliver call starts from then on. It
// returns a channel closed once the running ones returned, or nil if none
// runs.
func (e *ChanEndpoint) stop() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed.Swap(true) {
		close(e.done)
	}
	if e.active == 0 {
		return nil
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
	}
	return e.idle
}

// enter returns the deliver function and counts a call to it as running,
// or returns nil if the endpoint is closed or not started.
func (e *ChanEndpoint) enter() func(lamportmutex.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() || e.deliver == nil {
		return nil
	}
	e.active++
	return e.deliver
}

// exit records that a deliver call returned.
func (e *ChanEndpoint) exit() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active--
	if e.active == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}
