package transport

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// DefaultChanQueueBytes is ChanOptions.QueueBytes when it is zero.
const DefaultChanQueueBytes = 16 << 20

// chanMaxPayload is the largest payload a ChanEndpoint carries, whatever
// its QueueBytes.
const chanMaxPayload = 4 << 20

// ChanOptions configures a ChanNetwork. The zero value is a network without
// delay, faults or hooks, whose links hold DefaultChanQueueBytes each.
//
// Hooks (Delay, OnSend, OnDeliver) must be safe for concurrent use, must
// return quickly and must not call methods of the network or its endpoints.
type ChanOptions struct {
	// Seed seeds the random delays drawn for MaxDelay. Every link (ordered
	// pair of peers) draws from its own generator, seeded from Seed and the
	// link's two ids, so the delays on a link depend only on Seed and the
	// order of the Sends on that link.
	Seed int64
	// MaxDelay, if positive, delays every message by a random duration
	// drawn uniformly from [0, MaxDelay]. Delays never reorder a link: a
	// message is delivered no earlier than its own delay and no earlier
	// than the message sent before it on the same link. SetMaxDelay
	// changes it at run time.
	MaxDelay time.Duration
	// Delay, if set, returns the delay of each message and overrides
	// MaxDelay. Calls for one link are serialized, in Send order.
	Delay func(lamportmutex.Message) time.Duration
	// QueueBytes bounds each link (ordered pair of peers): the encoded
	// bytes of the messages Send accepted that the receiver's deliver has
	// not yet returned from (delayed, held by a fault or for a peer that is
	// down or not started, or being delivered). Send refuses a message that
	// would pass it, and a Data message that would pass half of it, with an
	// error wrapping lamportmutex.ErrQueueFull. Zero means
	// DefaultChanQueueBytes; it must not be negative. MaxPayload is the
	// smaller of 4 MiB and a quarter of it.
	QueueBytes int
	// OnSend, if set, is called with every message Send accepts, as it will
	// be delivered (after the codec round trip), once it is queued.
	OnSend func(lamportmutex.Message)
	// OnDeliver, if set, is called with every message, PeerUp and PeerDown
	// included, just before it is handed to the receiving endpoint's
	// deliver function, on the same goroutine. Calls for one link come from
	// one goroutine, in delivery order; calls for different links may run
	// at once.
	OnDeliver func(lamportmutex.Message)
	// Logger receives debug logs of faults and restarts; nil discards.
	Logger *slog.Logger
}

// ChanNetwork is an in-process network of peers connected by channels.
// Every peer has an endpoint, a lamportmutex.Transport, that keeps the whole
// of the Transport contract. Between any two peers there are two links, one
// per direction; each is a FIFO queue, bounded in bytes, whose own
// goroutine calls the receiver's deliver function, so delays and faults on
// one link never hold up another, and a receiver's deliveries from one
// sender never overlap.
//
// Every message goes through the same msgpack codec as the TCP transport,
// so what works in memory also works on the wire.
//
// Fault injection: Partition and Heal hold and release the links between
// two peers; Disconnect and Reconnect do so for every link of one peer; a
// held message is delivered, in order, once its link is open again, and
// the receiver hears of each cut by a PeerDown. Restart simulates a crash
// and restart of one peer. A ChanNetwork is safe for concurrent use.
type ChanNetwork struct {
	opts       ChanOptions
	log        *slog.Logger
	ids        []string
	index      map[string]int
	links      [][]*link // links[from][to]; nil when from == to
	queueBytes int
	maxPayload int
	maxDelay   atomic.Int64
	done       chan struct{} // closed by Close
	wg         sync.WaitGroup

	mu           sync.Mutex // guards the fields below; taken before any link's mu
	endpoints    []*ChanEndpoint
	incs         []uint64          // current incarnation of each peer, from 1
	partitioned  map[[2]int]bool   // key: ordered pair, lower index first
	quarantined  map[[2]int]uint64 // key: [receiver, sender]; value: the sender's refused incarnation
	disconnected []bool
	closed       bool
}

// NewChanNetwork returns a network of the peers named by ids, with an
// endpoint for each. Ids must be distinct and non-empty. Once an endpoint
// is started, its first delivery from each other peer is that peer's
// PeerUp.
func NewChanNetwork(ids []string, opts ChanOptions) (*ChanNetwork, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("transport: chan network needs at least one peer")
	}
	if opts.QueueBytes < 0 {
		return nil, fmt.Errorf("transport: chan network: negative QueueBytes %d", opts.QueueBytes)
	}
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		if id == "" {
			return nil, fmt.Errorf("transport: chan network: empty peer id")
		}
		if _, dup := index[id]; dup {
			return nil, fmt.Errorf("transport: chan network: duplicate peer id %q", id)
		}
		index[id] = i
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &ChanNetwork{
		opts:         opts,
		log:          log,
		ids:          append([]string(nil), ids...),
		index:        index,
		queueBytes:   opts.QueueBytes,
		done:         make(chan struct{}),
		endpoints:    make([]*ChanEndpoint, len(ids)),
		incs:         make([]uint64, len(ids)),
		partitioned:  make(map[[2]int]bool),
		quarantined:  make(map[[2]int]uint64),
		disconnected: make([]bool, len(ids)),
	}
	if n.queueBytes == 0 {
		n.queueBytes = DefaultChanQueueBytes
	}
	n.maxPayload = min(chanMaxPayload, n.queueBytes/4)
	n.maxDelay.Store(int64(opts.MaxDelay))
	for i := range ids {
		n.incs[i] = 1
		n.endpoints[i] = n.newEndpoint(i)
	}
	n.links = make([][]*link, len(ids))
	for i := range ids {
		n.links[i] = make([]*link, len(ids))
		for j := range ids {
			if i != j {
				l := newLink(n, i, j)
				l.src, l.dst = n.endpoints[i], n.endpoints[j]
				l.queue = append(l.queue, l.marker(lamportmutex.PeerUp, n.incs[i], true))
				l.conn = true
				n.links[i][j] = l
			}
		}
	}
	for i := range ids {
		for j := range ids {
			if l := n.links[i][j]; l != nil {
				n.wg.Add(1)
				go l.run()
			}
		}
	}
	return n, nil
}

// IDs returns the peers' ids in the order given to NewChanNetwork.
func (n *ChanNetwork) IDs() []string { return append([]string(nil), n.ids...) }

// Endpoint returns the current incarnation of peer id's endpoint: the one
// made by NewChanNetwork or by the latest Restart(id). It returns the same
// endpoint until then, even after that endpoint was closed.
func (n *ChanNetwork) Endpoint(id string) (*ChanEndpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("transport: endpoint %q: %w", id, ErrClosed)
	}
	i, ok := n.index[id]
	if !ok {
		return nil, fmt.Errorf("transport: endpoint %q: %w", id, ErrUnknownPeer)
	}
	return n.endpoints[i], nil
}

// Restart simulates a crash and restart of peer id and returns its new
// endpoint, not yet started. The old endpoint is closed (its Send fails
// with ErrClosed, and no deliver call to it runs once Restart returns; so
// Restart must not be called from the old endpoint's deliver). Messages
// the old incarnation sent that are still on their links are dropped;
// those already handed to a receiver's deliver count as delivered.
// Messages sent to the old incarnation and not yet delivered are dropped,
// including those held by a fault; they are never delivered to the new
// incarnation. Once started, the new endpoint's first delivery from each
// other peer is that peer's PeerUp, even across a fault. Every other peer
// receives PeerDown(id) if it was owed one, then PeerUp(id) before any
// message of the new incarnation; that PeerUp travels on the link from
// id, so a Partition or Disconnect holds it like a message. Partitions and
// disconnections of id stay in force.
func (n *ChanNetwork) Restart(id string) (*ChanEndpoint, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("transport: restart %q: %w", id, ErrClosed)
	}
	i, ok := n.index[id]
	if !ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("transport: restart %q: %w", id, ErrUnknownPeer)
	}
	old := n.endpoints[i]
	idle := old.stop()
	n.incs[i]++
	ep := n.newEndpoint(i)
	n.endpoints[i] = ep
	for k := range n.quarantined {
		if k[0] == i {
			delete(n.quarantined, k) // the new incarnation starts afresh
		}
	}
	droppedFrom, droppedTo := 0, 0
	// Inbound first: drop what was addressed to the dead incarnation and
	// point every link at the new one, before any peer can learn of it. A
	// peer answers the PeerUp at once, and its answer must not be taken for
	// a message to the dead incarnation and dropped.
	for j := range n.ids {
		if j == i {
			continue
		}
		in := n.links[j][i]
		in.mu.Lock()
		droppedTo += in.dropQueued(false)
		in.epoch++
		in.dst = ep
		in.upDelivered, in.armed = false, false
		in.queue = append(in.queue, in.marker(lamportmutex.PeerUp, n.incs[j], true))
		in.mu.Unlock()
	}
	// Outbound: drop what the dead incarnation left on the link (but not a
	// PeerDown owed), then queue the new one's PeerUp. It travels like a
	// message (held by faults, not delayed) and nothing the new
	// incarnation sends can overtake it.
	for j := range n.ids {
		if j == i {
			continue
		}
		out := n.links[i][j]
		out.mu.Lock()
		droppedFrom += out.dropQueued(true)
		if out.armed {
			out.owePeerDown()
		}
		out.epoch++
		out.src = ep
		out.upDelivered = false
		out.queue = append(out.queue, out.marker(lamportmutex.PeerUp, n.incs[i], false))
		out.mu.Unlock()
	}
	for j := range n.ids {
		if j != i {
			n.updateBlocked(i, j)
			n.updateBlocked(j, i)
		}
	}
	n.log.Debug("chan network: restart", "peer", id,
		"dropped_from_old", droppedFrom, "dropped_to_old", droppedTo)
	n.mu.Unlock()
	if idle != nil {
		<-idle
	}
	return ep, nil
}

// Partition holds every message between peers a and b, in both directions,
// until Heal(a, b). Held messages are kept, never dropped.
func (n *ChanNetwork) Partition(a, b string) error {
	return n.setPartition(a, b, true)
}

// Heal ends a Partition of a and b; held messages are then delivered in
// order (unless a Disconnect still holds them).
func (n *ChanNetwork) Heal(a, b string) error {
	return n.setPartition(a, b, false)
}

// Disconnect holds every message to and from peer id until Reconnect(id).
// Held messages are kept, never dropped.
func (n *ChanNetwork) Disconnect(id string) error {
	return n.setDisconnected(id, true)
}

// Reconnect ends a Disconnect of peer id; held messages are then delivered
// in order (unless a Partition still holds them).
func (n *ChanNetwork) Reconnect(id string) error {
	return n.setDisconnected(id, false)
}

// SetMaxDelay changes ChanOptions.MaxDelay for messages sent from now on.
// It has no effect when ChanOptions.Delay is set.
func (n *ChanNetwork) SetMaxDelay(d time.Duration) {
	n.maxDelay.Store(int64(d))
}

// Close ends the network: every endpoint is closed, what is undelivered is
// dropped, and every goroutine of the network stops. It waits for the
// deliver calls that are running to return, or for ctx to end: then it
// returns ctx's error, and the network's goroutines stop as soon as those
// calls return; no deliver call starts after Close. It must not be called
// from a deliver function. A second Close returns nil.
func (n *ChanNetwork) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, ep := range n.endpoints {
		ep.stop()
	}
	close(n.done)
	n.mu.Unlock()
	stopped := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		return fmt.Errorf("transport: chan network close: deliver calls still running: %w", ctx.Err())
	}
	n.log.Debug("chan network: closed")
	return nil
}

func (n *ChanNetwork) setPartition(a, b string, on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("transport: partition %q/%q: %w", a, b, ErrClosed)
	}
	i, ok := n.index[a]
	if !ok {
		return fmt.Errorf("transport: partition %q: %w", a, ErrUnknownPeer)
	}
	j, ok := n.index[b]
	if !ok {
		return fmt.Errorf("transport: partition %q: %w", b, ErrUnknownPeer)
	}
	if i == j {
		return fmt.Errorf("transport: cannot partition %q from itself", a)
	}
	if on {
		n.partitioned[pairKey(i, j)] = true
	} else {
		delete(n.partitioned, pairKey(i, j))
	}
	n.updateBlocked(i, j)
	n.updateBlocked(j, i)
	n.log.Debug("chan network: partition", "a", a, "b", b, "on", on)
	return nil
}

func (n *ChanNetwork) setDisconnected(id string, on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("transport: disconnect %q: %w", id, ErrClosed)
	}
	i, ok := n.index[id]
	if !ok {
		return fmt.Errorf("transport: disconnect %q: %w", id, ErrUnknownPeer)
	}
	n.disconnected[i] = on
	for j := range n.ids {
		if j != i {
			n.updateBlocked(i, j)
			n.updateBlocked(j, i)
		}
	}
	n.log.Debug("chan network: disconnect", "peer", id, "on", on)
	return nil
}

// updateBlocked recomputes whether link from->to is held, drops what is
// sent on it, or need not be waited for by Flush. n.mu is held.
func (n *ChanNetwork) updateBlocked(from, to int) {
	q, ok := n.quarantined[[2]int{to, from}]
	discard := ok && q == n.incs[from]
	q, ok = n.quarantined[[2]int{from, to}]
	held := ok && q == n.incs[to]
	blocked := n.disconnected[from] || n.disconnected[to] || n.partitioned[pairKey(from, to)] || held || discard
	dead := held || n.endpoints[to].isClosed()
	l := n.links[from][to]
	l.mu.Lock()
	l.setState(blocked, discard, dead)
	l.mu.Unlock()
	l.kick()
}

// newEndpoint makes a fresh incarnation of peer i. It is not yet reachable
// by any link.
func (n *ChanNetwork) newEndpoint(i int) *ChanEndpoint {
	return &ChanEndpoint{net: n, id: n.ids[i], idx: i, inc: n.incs[i], done: make(chan struct{})}
}

func pairKey(i, j int) [2]int {
	if i > j {
		i, j = j, i
	}
	return [2]int{i, j}
}
