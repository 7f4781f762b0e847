package ledger

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// run runs one step of the node's replica: f feeds it one input under
// n.step, and every action the input queued is applied, in order, and the
// snapshot published, before the lock is let go. An action's continuation
// (action.then) is called with its result and may queue more, which are
// applied in the same step. Events and completions (actDone) are handed
// on after the snapshot is published, still under n.step.
//
// Messages to peers (actSend, actSendBlocks, actQuarantine) leave the
// step: the goroutine that ran it applies them, in order, right after it
// lets go, so that a transport that pushes back, or the store reads that a
// peer's catch-up needs, never hold the replica (a HandleMessage never
// waits for them). A send's continuation runs as a step of its own.
func (n *Node) run(f func(*replica)) {
	n.step.Lock()
	f(n.r)
	n.apply()
	n.publish()
	// Events and completions only now: a subscriber or caller told of the
	// step's outcome reads a snapshot that shows it.
	for _, ev := range n.stepEvs {
		n.emit(ev)
	}
	clear(n.stepEvs)
	n.stepEvs = n.stepEvs[:0]
	for _, a := range n.done {
		_ = n.do(n.locker, a)
	}
	n.done = nil
	later, l := n.later, n.locker
	n.later = nil
	n.step.Unlock()
	for _, a := range later {
		err := n.do(l, a)
		if a.then != nil {
			n.run(func(*replica) { a.then(err) })
		}
	}
}

// apply applies the replica's queued actions, and those their
// continuations queue, in order; messages to peers are left in n.later,
// and completions in n.done.
// n.step must be held.
func (n *Node) apply() {
	for len(n.r.out) > 0 {
		acts := n.r.take()
		for i, a := range acts {
			switch {
			case a.kind == actPersist && i != len(acts)-1:
				panic(fmt.Sprintf("ledger: a step queued %d actions after a persist", len(acts)-1-i))
			case a.kind == actSend || a.kind == actSendBlocks || a.kind == actQuarantine:
				n.later = append(n.later, a)
				continue
			case a.kind == actDone:
				n.done = append(n.done, a)
				continue
			}
			err := n.do(n.locker, a)
			if a.then != nil {
				a.then(err)
			}
		}
		n.r.recycle(acts)
	}
}

// do applies one action with the node's mutex l, and returns the result
// its continuation gets.
func (n *Node) do(l locker, a action) error {
	switch a.kind {
	case actPersist:
		if err := n.store.Append(a.blocks...); err != nil {
			return err
		}
		if n.r.durability == SyncBeforeRelease {
			if err := n.store.Sync(); err != nil {
				return fmt.Errorf("%w: %w", errUnsynced, err)
			}
		}
	case actRelease:
		err := l.Unlock(a.payload)
		n.stepEvent(Event{Kind: EventLockReleased, Clock: n.tok.Clock, Blocks: int(a.from), Elapsed: time.Since(n.granted)})
		return err
	case actSend:
		if l == nil {
			return errNoLocker
		}
		err := l.Send(a.peer, a.payload)
		if err != nil {
			n.logSendError(n.life, a.peer, a.op, err)
		}
		return err
	case actSendBlocks:
		if l == nil {
			return nil
		}
		return n.sendBlocks(l, a.peer, a.from, a.to)
	case actQuarantine:
		if l != nil {
			l.Quarantine(a.peer, a.cause)
		}
	case actEmit:
		n.stepEvent(a.ev)
	case actDone:
		for _, w := range a.waits {
			w.done(a.cause)
		}
	case actKickSyncer:
		n.kickSyncer()
	case actKickCatchup:
		n.kickSync()
	case actWakeRound:
		close(n.progress)
		n.progress = make(chan struct{})
	default:
		panic(fmt.Sprintf("ledger: unknown action %d", a.kind))
	}
	return nil
}

// stepEvent queues ev for after the running step's snapshot (see run).
// n.step must be held.
func (n *Node) stepEvent(ev Event) {
	if n.onEvent != nil {
		n.stepEvs = append(n.stepEvs, ev)
	}
}

// publish replaces the snapshot if the step changed what it shows, and
// wakes those that wait for a newer one. n.step must be held.
func (n *Node) publish() {
	r := n.r
	old := n.snap.Load()
	head := r.chain.Head()
	if old != nil && old.head.Hash == head.Hash && (old.failed != nil) == (r.failed != nil) && old.closed == r.closed {
		return
	}
	n.snap.Store(&snapshot{head: head, chain: r.chain, bal: slices.Clone(r.chain.bal), failed: r.failed, closed: r.closed, grown: make(chan struct{})})
	if old != nil {
		close(old.grown)
	}
}

// view returns the current snapshot.
func (n *Node) view() *snapshot { return n.snap.Load() }

// balances returns the snapshot's table.
func (s *snapshot) balances() Balances { return s.chain.table(s.bal) }

// balance returns id's balance in the snapshot, and whether id is a member.
func (s *snapshot) balance(id string) (int64, bool) {
	i, ok := s.chain.index[id]
	if !ok {
		return 0, false
	}
	return s.bal[i], true
}

// errUnsynced: a persist whose blocks were appended but whose sync failed;
// the store may keep them.
var errUnsynced = errors.New("appended, but the sync failed")

// errNoLocker: a catch-up message before the node has its mutex.
var errNoLocker = errors.New("ledger: the node has no mutex yet")
