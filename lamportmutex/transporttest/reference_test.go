package transporttest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/lamportmutex/transporttest"
)

// refNet is a small, correct in-memory network: the reference the suite
// is checked against. Every ordered pair of peers has a link, a FIFO queue
// drained by a goroutine of its own that delivers to the receiver's
// current endpoint. A message counts toward its link's bound from Send
// until its deliver call returns (the acknowledgement). A broken mode, set
// by the tests of the suite, makes it break one obligation.
type refNet struct {
	mode  string // "" for the correct reference; see brokenModes
	ids   []string
	index map[string]int
	done  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	eps     []*refEndpoint // the current incarnation of each peer
	links   [][]*refLink   // [from][to]; nil when from == to
	cut     map[[2]int]bool
	changed chan struct{} // closed and replaced when a link acknowledges or drops
}

const (
	refBound      = 1 << 20
	refMaxPayload = 256 << 10
	refOverhead   = 32 // bytes counted per message beside its payload
)

type refLink struct {
	net      *refNet
	from, to int
	wake     chan struct{} // capacity 1: something changed for this link

	// guarded by net.mu
	queue    []refItem
	bytes    int    // accepted and not acknowledged or dropped
	sent     uint64 // messages accepted
	acked    uint64 // messages acknowledged or dropped
	downNext bool   // deliver PeerDown before anything else
	dupTick  int
	late     bool // broken modes: the link has just misbehaved
}

type refItem struct {
	msg  lamportmutex.Message
	size int
	kept *lamportmutex.Message // broken mode keepsBatch: the caller's, delivered in msg's place
}

type refEndpoint struct {
	net *refNet
	i   int
	id  string
	inc uint64

	active sync.WaitGroup // deliver calls running

	// guarded by net.mu
	deliver func(lamportmutex.Message)
	started bool
	closed  bool
	seen    map[int]uint64 // the sender incarnation each link's PeerUp named
	quar    map[int]uint64 // quarantined incarnation by sender
	sends   int
}

func newRefNet(t *testing.T, ids []string, mode string) *refNet {
	n := &refNet{
		mode: mode, ids: ids, index: make(map[string]int), done: make(chan struct{}),
		cut: make(map[[2]int]bool), changed: make(chan struct{}),
	}
	for i, id := range ids {
		n.index[id] = i
	}
	n.eps = make([]*refEndpoint, len(ids))
	for i := range ids {
		n.eps[i] = n.newEndpoint(i, 1)
	}
	n.links = make([][]*refLink, len(ids))
	for i := range ids {
		n.links[i] = make([]*refLink, len(ids))
		for j := range ids {
			if i != j {
				l := &refLink{net: n, from: i, to: j, wake: make(chan struct{}, 1)}
				n.links[i][j] = l
				n.wg.Add(1)
				go l.run()
			}
		}
	}
	t.Cleanup(n.close)
	return n
}

func (n *refNet) newEndpoint(i int, inc uint64) *refEndpoint {
	return &refEndpoint{net: n, i: i, id: n.ids[i], inc: inc, seen: make(map[int]uint64), quar: make(map[int]uint64)}
}

func (n *refNet) network() transporttest.Network {
	trs := make([]lamportmutex.Transport, len(n.eps))
	for i, ep := range n.eps {
		trs[i] = ep
	}
	return transporttest.Network{Transports: trs, Restart: n.restart, Cut: n.setCut(true), Heal: n.setCut(false)}
}

func (n *refNet) close() {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.done)
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// changedLocked wakes every link and every Flush. n.mu is held.
func (n *refNet) changedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
	for _, ls := range n.links {
		for _, l := range ls {
			if l != nil {
				l.kick()
			}
		}
	}
}

func (l *refLink) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// dropLocked drops what the link holds; dropped messages count as
// acknowledged. n.mu is held.
func (l *refLink) dropLocked() {
	for _, it := range l.queue {
		l.bytes -= it.size
		l.acked++
	}
	l.queue = nil
}

func (n *refNet) restart(id string) (lamportmutex.Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i, ok := n.index[id]
	if !ok {
		return nil, fmt.Errorf("ref: restart of unknown %q", id)
	}
	old := n.eps[i]
	old.closed = true // a crash: nothing flushed
	ep := n.newEndpoint(i, old.inc+1)
	n.eps[i] = ep
	for j := range n.ids {
		if j == i {
			continue
		}
		if n.mode != "deadAfterPeerUp" {
			n.links[i][j].dropLocked() // the crashed incarnation's messages
		}
		n.links[j][i].dropLocked() // messages to the crashed incarnation
		n.eps[j].quar[i] = 0
		if n.mode == "noPeerUpAfterRestart" {
			n.eps[j].seen[i] = ep.inc
		}
	}
	n.changedLocked()
	return ep, nil
}

func (n *refNet) setCut(on bool) func(a, b string) error {
	return func(a, b string) error {
		n.mu.Lock()
		defer n.mu.Unlock()
		i, j := n.index[a], n.index[b]
		n.cut[[2]int{min(i, j), max(i, j)}] = on
		if on {
			n.links[i][j].downNext = true
			n.links[j][i].downNext = true
			if n.mode == "dropOnCut" {
				n.links[i][j].queue = nil // lost with the connection, yet counted
				n.links[j][i].queue = nil
			}
		} else if n.mode == "peerUpOnReconnect" {
			n.eps[i].seen[j] = 0
			n.eps[j].seen[i] = 0
		}
		n.changedLocked()
		return nil
	}
}

// run delivers the link's messages, one at a time, until the network
// closes.
func (l *refLink) run() {
	defer l.net.wg.Done()
	for {
		ep, m, size, ok := l.next()
		if !ok {
			return
		}
		if l.net.mode == "overlap" {
			started := make(chan struct{})
			go func() {
				defer ep.active.Done()
				close(started)
				ep.deliver(m)
				l.ack(size)
			}()
			<-started
			continue
		}
		ep.deliver(m)
		l.ack(size)
		ep.active.Done()
	}
}

func (l *refLink) ack(size int) {
	if size < 0 {
		return
	}
	n := l.net
	n.mu.Lock()
	l.bytes -= size
	l.acked++
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// next waits for the next thing to deliver and returns it with its
// endpoint (whose active count it took) and its size (-1 for PeerUp and
// PeerDown, which are not acknowledged).
func (l *refLink) next() (*refEndpoint, lamportmutex.Message, int, bool) {
	n := l.net
	for {
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return nil, lamportmutex.Message{}, 0, false
		}
		ep := n.eps[l.to]
		if m, size, ok := l.nextLocked(ep); ok {
			ep.active.Add(1)
			n.mu.Unlock()
			return ep, m, size, true
		}
		n.mu.Unlock()
		select {
		case <-l.wake:
		case <-n.done:
		}
	}
}

func (l *refLink) nextLocked(ep *refEndpoint) (lamportmutex.Message, int, bool) {
	n := l.net
	if !ep.started || ep.closed {
		return lamportmutex.Message{}, 0, false
	}
	from, to := n.ids[l.from], n.ids[l.to]
	inc := n.eps[l.from].inc
	if q := ep.quar[l.from]; q != 0 && q == inc {
		l.dropLocked()
		return lamportmutex.Message{}, 0, false
	}
	if n.mode == "peerDownFirst" && ep.seen[l.from] == 0 && !l.late {
		l.late = true
		return lamportmutex.Message{Kind: lamportmutex.PeerDown, From: from, To: to}, -1, true
	}
	if l.downNext {
		l.downNext = n.mode == "peerDownTwice" && !l.late
		l.late = l.downNext
		if ep.seen[l.from] != 0 {
			return lamportmutex.Message{Kind: lamportmutex.PeerDown, From: from, To: to}, -1, true
		}
	}
	if n.cut[[2]int{min(l.from, l.to), max(l.from, l.to)}] {
		return lamportmutex.Message{}, 0, false
	}
	if ep.seen[l.from] != inc {
		// latePeerUp: one message goes ahead of each PeerUp.
		late := n.mode == "latePeerUp" && len(l.queue) > 0 && !l.late
		l.late = late
		if late {
			it := l.queue[0]
			l.queue = l.queue[1:]
			return it.msg, it.size, true
		}
		ep.seen[l.from] = inc
		return lamportmutex.Message{Kind: lamportmutex.PeerUp, From: from, To: to, Incarnation: inc}, -1, true
	}
	if len(l.queue) == 0 {
		return lamportmutex.Message{}, 0, false
	}
	it := l.queue[0]
	l.dupTick++
	if n.mode == "duplicate" && l.dupTick%40 == 0 {
		return it.msg, -1, true // delivered now and again later
	}
	l.queue = l.queue[1:]
	if it.kept != nil {
		it.msg = *it.kept
	}
	if n.mode == "forgeFrom" && l.dupTick%30 == 0 {
		for _, id := range n.ids {
			if id != it.msg.From && id != it.msg.To {
				it.msg.From = id // delivered as if a third peer had sent it
				break
			}
		}
	}
	return it.msg, it.size, true
}

// ID, Incarnation, MaxPayload, Start, Send, Flush, Quarantine and Close
// implement lamportmutex.Transport.

func (e *refEndpoint) ID() string          { return e.id }
func (e *refEndpoint) Incarnation() uint64 { return e.inc }
func (e *refEndpoint) MaxPayload() int     { return refMaxPayload }

func (e *refEndpoint) Start(deliver func(lamportmutex.Message)) error {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.started || e.closed {
		return errors.New("ref: started twice or after close")
	}
	e.started, e.deliver = true, deliver
	n.changedLocked()
	return nil
}

func (e *refEndpoint) Send(msgs ...lamportmutex.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	n := e.net
	items := make([]refItem, 0, len(msgs))
	for i, m := range msgs {
		j, ok := n.index[m.To]
		switch {
		case m.From != e.id:
			return fmt.Errorf("ref: send %v: From is not %q", m, e.id)
		case !ok || j == e.i:
			return fmt.Errorf("ref: send %v: unknown peer", m)
		case m.To != msgs[0].To && n.mode != "mixedBatch":
			return fmt.Errorf("ref: send %v: not for %s, as the call's first message", m, msgs[0].To)
		case len(m.Payload) > refMaxPayload:
			return fmt.Errorf("ref: send %v: payload over %d bytes", m, refMaxPayload)
		case !m.Kind.Valid() || m.Kind == lamportmutex.PeerUp || m.Kind == lamportmutex.PeerDown:
			return fmt.Errorf("ref: send %v: not a kind peers send", m)
		}
		it := refItem{msg: m, size: len(m.Payload) + refOverhead}
		switch n.mode {
		case "keepsPayload":
		case "keepsBatch":
			it.kept = &msgs[i]
		default:
			it.msg.Payload = append([]byte(nil), m.Payload...)
		}
		items = append(items, it)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.closed && n.mode != "sendAfterClose" {
		return fmt.Errorf("ref: send %v: %w", msgs[0], lamportmutex.ErrClosed)
	}
	if len(items) > 1 && n.mode != "partialBatch" {
		held := map[*refLink]int{}
		for _, it := range items {
			l := n.links[e.i][n.index[it.msg.To]]
			if _, ok := held[l]; !ok {
				held[l] = l.bytes
			}
			if held[l]+it.size > n.limit(it.msg) {
				return fmt.Errorf("ref: send %v: %w", it.msg, lamportmutex.ErrQueueFull)
			}
			held[l] += it.size
		}
	}
	for _, it := range items {
		if err := e.put(it); err != nil {
			return err
		}
	}
	return nil
}

// limit is the bound of the queue for m. n.mu is held.
func (n *refNet) limit(m lamportmutex.Message) int {
	if m.Kind == lamportmutex.Data && n.mode != "dataFullBound" {
		return refBound / 2
	}
	return refBound
}

// put queues it on its link. n.mu is held.
func (e *refEndpoint) put(it refItem) error {
	n := e.net
	m, size := it.msg, it.size
	l := n.links[e.i][n.index[m.To]]
	for l.bytes+size > n.limit(m) {
		if n.mode == "queueRefused" {
			l.queue = append(l.queue, it) // refused, and sent all the same
			l.kick()
		}
		if n.mode != "blockingSend" {
			return fmt.Errorf("ref: send %v: %w", m, lamportmutex.ErrQueueFull)
		}
		ch := n.changed
		n.mu.Unlock()
		<-ch
		n.mu.Lock()
	}
	e.sends++
	if n.mode == "drop" && e.sends%50 == 0 {
		return nil
	}
	l.bytes += size
	l.sent++
	if k := len(l.queue); n.mode == "reorder" && k > 0 && e.sends%7 == 0 {
		l.queue = append(l.queue[:k-1], it, l.queue[k-1])
	} else {
		l.queue = append(l.queue, it)
	}
	l.kick()
	return nil
}

func (e *refEndpoint) Flush(ctx context.Context) error {
	n := e.net
	if n.mode == "flushEarly" {
		return nil
	}
	n.mu.Lock()
	if e.closed {
		n.mu.Unlock()
		return fmt.Errorf("ref: flush: %w", lamportmutex.ErrClosed)
	}
	target := make([]uint64, len(n.ids))
	receivers := make([]*refEndpoint, len(n.ids))
	for j, l := range n.links[e.i] {
		if l != nil {
			target[j], receivers[j] = l.sent, n.eps[j]
		}
	}
	for {
		done := true
		for j, l := range n.links[e.i] {
			if l == nil || l.acked >= target[j] || n.eps[j] != receivers[j] || receivers[j].closed {
				continue
			}
			done = false
		}
		if done {
			n.mu.Unlock()
			return nil
		}
		if e.closed {
			n.mu.Unlock()
			return fmt.Errorf("ref: flush: %w", lamportmutex.ErrClosed)
		}
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ref: flush: %w", ctx.Err())
		}
		n.mu.Lock()
	}
}

func (e *refEndpoint) Quarantine(peer string, inc uint64, _ error) {
	n := e.net
	n.mu.Lock()
	defer n.mu.Unlock()
	j, ok := n.index[peer]
	if !ok || e.closed || n.mode == "quarantineIgnored" {
		return
	}
	e.quar[j] = inc
	n.changedLocked()
}

func (e *refEndpoint) Close(ctx context.Context) error {
	n := e.net
	n.mu.Lock()
	closed := e.closed
	n.mu.Unlock()
	if closed {
		return nil
	}
	err := e.Flush(ctx)
	n.mu.Lock()
	e.closed = true
	n.changedLocked()
	n.mu.Unlock()
	if n.mode != "deliverAfterClose" {
		e.active.Wait()
	}
	if err != nil {
		return fmt.Errorf("ref: close: %w", err)
	}
	return nil
}

func TestReference(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, ids []string) transporttest.Network {
		return newRefNet(t, ids, "").network()
	})
}
