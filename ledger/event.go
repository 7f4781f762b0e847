package ledger

import (
	"context"
	"sync"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventBlockInserted: a block was persisted and inserted. Block is the
	// block; From is the peer whose release carried it, or this node's own
	// id for a block it made (Local), or the peer that sent it by catch-up
	// (Fetched).
	EventBlockInserted EventKind = iota + 1
	// EventTransferCommitted: a Transfer call of this node succeeded.
	// Transfer and Block are set; Duplicate is true when the call repeated
	// an already committed transfer ID.
	EventTransferCommitted
	// EventTransferRejected: a Transfer call of this node failed. Transfer
	// and Err are set (e.g. ErrInsufficientFunds, ErrSelfTransfer).
	EventTransferRejected
	// EventFailed: the node stopped taking transfers (Node.Err): its own
	// storage failed, or a *ConflictError proves a fork. Err says why.
	EventFailed
	// EventPeerRefused: peer From sent bad input; it was refused and that
	// incarnation of From quarantined. Err is the *PeerError.
	EventPeerRefused
	// EventDropped: the subscriber was too slow, and Dropped events were
	// lost since the last event it got (see EventQueueSize).
	EventDropped
	// EventDisagreement: peer From sent Block, validly sealed, for a height
	// at which this node has another member's block. The block was
	// refused; From was not quarantined (it may only have relayed it), and
	// the node keeps running. The replicas disagree at that height, and
	// stall rather than stop. Err is a *ConflictError with both blocks.
	EventDisagreement
	// EventPeerUp: a new incarnation of peer From came up (at first
	// contact, or after a restart).
	EventPeerUp
	// EventPeerDown: the transport lost its connection to peer From. It is
	// news only: the peer may come back as the same incarnation.
	EventPeerDown
	// EventLockGranted: this node was granted the mutex for a batch, under
	// Clock, Elapsed after it asked.
	EventLockGranted
	// EventLockReleased: this node released the mutex it took under Clock,
	// with Blocks blocks, Elapsed after the grant.
	EventLockReleased
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventBlockInserted:
		return "block-inserted"
	case EventTransferCommitted:
		return "transfer-committed"
	case EventTransferRejected:
		return "transfer-rejected"
	case EventFailed:
		return "failed"
	case EventPeerRefused:
		return "peer-refused"
	case EventDropped:
		return "dropped"
	case EventDisagreement:
		return "disagreement"
	case EventPeerUp:
		return "peer-up"
	case EventPeerDown:
		return "peer-down"
	case EventLockGranted:
		return "lock-granted"
	case EventLockReleased:
		return "lock-released"
	}
	return "unknown"
}

// Event reports something that happened on a Node, for a UI or a log. See
// Config.OnEvent.
type Event struct {
	Kind      EventKind
	Block     Block
	From      string
	Local     bool
	Fetched   bool
	Transfer  Transfer
	Duplicate bool
	Err       error
	Dropped   uint64        // EventDropped: how many events were lost
	Clock     uint64        // EventLockGranted, EventLockReleased: the grant's clock
	Blocks    int           // EventLockReleased: the blocks the release carried
	Elapsed   time.Duration // EventLockGranted: the wait for the mutex; EventLockReleased: the time it was held
}

// EventQueueSize bounds the events waiting for Config.OnEvent. When the
// subscriber falls that far behind, further events are dropped and
// counted until there is room again; the subscriber then gets an
// EventDropped with the count.
const EventQueueSize = 1024

// events is a Node's bounded event queue and the goroutine that delivers
// it, started with the first event.
type events struct {
	onEvent func(Event)

	emu       sync.Mutex
	evQueue   []Event // at most EventQueueSize
	evLost    uint64  // dropped since the last EventDropped was queued
	evDropped uint64  // dropped in all
	evRunning bool
	evClosing bool
	evWake    chan struct{} // buffered 1
	evDone    chan struct{} // closed when the goroutine exits
}

// emit queues ev for OnEvent without waiting, or drops and counts it if
// the queue is full.
func (n *Node) emit(ev Event) {
	if n.onEvent == nil {
		return
	}
	n.emu.Lock()
	switch {
	case n.evClosing:
		n.evDropped++
		n.emu.Unlock()
		return
	case n.evLost > 0 && len(n.evQueue)+2 <= EventQueueSize:
		n.evQueue = append(n.evQueue, Event{Kind: EventDropped, Dropped: n.evLost}, ev)
		n.evLost = 0
	case n.evLost == 0 && len(n.evQueue) < EventQueueSize:
		n.evQueue = append(n.evQueue, ev)
	default:
		n.evLost++
		n.evDropped++
	}
	if !n.evRunning {
		n.evRunning = true
		n.evWake = make(chan struct{}, 1)
		n.evDone = make(chan struct{})
		go n.deliver(n.evWake, n.evDone)
	}
	wake := n.evWake
	n.emu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// deliver calls OnEvent for every queued event, in order, until
// stopEvents.
func (n *Node) deliver(wake, done chan struct{}) {
	defer close(done)
	for {
		n.emu.Lock()
		var ev Event
		var ok bool
		switch {
		case len(n.evQueue) > 0:
			ev, ok = n.evQueue[0], true
			n.evQueue[0] = Event{}
			n.evQueue = n.evQueue[1:]
			if len(n.evQueue) == 0 {
				n.evQueue = nil // let the backing array go
			}
		case n.evLost > 0:
			ev, ok = Event{Kind: EventDropped, Dropped: n.evLost}, true
			n.evLost = 0
		}
		closing := n.evClosing
		n.emu.Unlock()
		if ok {
			n.onEvent(ev)
			continue
		}
		if closing {
			return
		}
		<-wake
	}
}

// stopEvents delivers the events already queued, then stops the delivery
// goroutine and waits for it; later events are dropped. If the goroutine
// has not finished when ctx ends, the events still queued are dropped and
// counted, and stopEvents returns without waiting for the call in
// progress; the goroutine exits when that call returns.
func (n *Node) stopEvents(ctx context.Context) {
	n.emu.Lock()
	n.evClosing = true
	running, wake, done := n.evRunning, n.evWake, n.evDone
	n.emu.Unlock()
	if !running {
		return
	}
	select {
	case wake <- struct{}{}:
	default:
	}
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	n.emu.Lock()
	defer n.emu.Unlock()
	for _, ev := range n.evQueue {
		if ev.Kind != EventDropped { // a marker: what it reports is counted already
			n.evDropped++
		}
	}
	n.evQueue, n.evLost = nil, 0
}

// EventsDropped returns how many events were dropped because
// Config.OnEvent fell EventQueueSize events behind, came after Close, or
// were still queued when Close stopped waiting for them.
func (n *Node) EventsDropped() uint64 {
	n.emu.Lock()
	defer n.emu.Unlock()
	return n.evDropped
}
