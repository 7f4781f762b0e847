package ledger

import (
	"context"
	"fmt"
)

// syncer makes the store durable in the background, for SyncAfterRelease:
// one goroutine calls Store.Sync for everything written since its last
// call (a group: every batch and every received block written meanwhile
// shares the one sync), outside the step lock, then feeds the result back
// to the replica, which completes the Transfers whose blocks the sync
// covered. Nothing waits for it while holding the mutex.
//
// Safety rests on the store's being append-only: a sync that covers height
// h covers every block below h too, so what survives a power loss is a
// prefix of the chain, and a Transfer that reported success has its block,
// and every block before it, on this client's disk.
type syncer struct {
	durKick chan struct{} // buffered 1: something was written or awaits a sync
	durStop chan struct{}
	durDone chan struct{} // closed when the goroutine exits; nil before it starts
}

// durableState is a replica's part of the syncer: what is written, what
// is synced, and who waits for which.
type durableState struct {
	checkpoint uint64 // the height of the newest checkpoint saved or tried
	written    uint64 // the highest height appended to the store
	durable    uint64 // the highest height a Sync covered
	waits      []syncWait
	durErr     error // the first failed Sync; the node has stopped
	durClosed  bool  // the syncer has stopped: nothing more becomes durable
}

// CheckpointInterval is how many blocks a node lets pass between the
// checkpoints it saves (and it saves one at Close): a restart verifies at
// most about this many blocks after the newest checkpoint.
const CheckpointInterval = 4096

// syncWait is a completion to run once the store is durable up to height.
type syncWait struct {
	height uint64
	done   func(error)
}

// wrote notes that the store holds blocks up to height h, and has them
// synced in the background under SyncAfterRelease, and a checkpoint saved
// when one is due.
func (r *replica) wrote(h uint64) {
	r.written = max(r.written, h)
	if r.durability == SyncBeforeRelease {
		r.durable = r.written // the writer synced
	}
	if r.durability == SyncAfterRelease || r.written >= r.checkpoint+CheckpointInterval {
		r.do(action{kind: actKickSyncer})
	}
}

// whenDurable queues done, to run once the store's sync covers height h:
// at once if it does already. done gets the sync's error if it failed, or
// ErrClosed if the node closed first. done must not block.
func (r *replica) whenDurable(h uint64, done func(error)) {
	w := []syncWait{{height: h, done: done}}
	switch {
	case r.durErr != nil:
		r.do(action{kind: actDone, waits: w, cause: r.durErr})
	case h <= r.durable:
		r.do(action{kind: actDone, waits: w})
	case r.durClosed:
		r.do(action{kind: actDone, waits: w, cause: ErrClosed})
	default:
		r.waits = append(r.waits, w...)
		r.do(action{kind: actKickSyncer})
	}
}

// syncPlan says what the syncer is to do: sync up to target if pending,
// and save the checkpoint cp at cpHeight if one is due (with closing, if
// the chain grew since the last one at all). The checkpoint's state is
// taken before the sync: every block it covers was appended before it was
// inserted, so the sync covers it.
func (r *replica) syncPlan(closing bool) (target uint64, pending bool, cp []byte, cpHeight uint64) {
	target, pending = r.written, r.written > r.durable && r.durErr == nil
	if r.durErr == nil {
		if h := r.chain.Head().Height; h >= r.checkpoint+CheckpointInterval || closing && h > r.checkpoint {
			cp, cpHeight = r.chain.checkpoint(r.signer), h
		}
	}
	return target, pending, cp, cpHeight
}

// syncDone takes the syncer's result: the store synced up to target (err
// nil) or failed, and a checkpoint at cpHeight was saved or tried
// (checkpointed). It runs the completions the sync covers.
func (r *replica) syncDone(target uint64, checkpointed bool, cpHeight uint64, err error) {
	if err != nil {
		r.durErr = r.fail(fmt.Errorf("sync the store up to height %d: %w", target, err))
		r.do(action{kind: actDone, waits: r.waits, cause: r.durErr})
		r.waits = nil
		return
	}
	if checkpointed {
		r.checkpoint = cpHeight
	}
	r.durable = max(r.durable, target)
	var due []syncWait
	keep := r.waits[:0]
	for _, w := range r.waits {
		if w.height <= r.durable {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(r.waits[len(keep):])
	r.waits = keep
	if len(due) > 0 {
		r.do(action{kind: actDone, waits: due})
	}
}

// closeDurable notes that the syncer stopped: what still waits gets
// ErrClosed.
func (r *replica) closeDurable() {
	r.do(action{kind: actDone, waits: r.waits, cause: ErrClosed})
	r.waits, r.durClosed = nil, true
}

// startSyncer starts the sync goroutine; stopSyncer stops it.
func (n *Node) startSyncer() {
	n.durDone = make(chan struct{})
	go n.durableLoop(n.durDone)
}

// awaitDurable waits until the store's sync covers height h, ctx ends, or
// the node closes (ErrClosed).
func (n *Node) awaitDurable(ctx context.Context, h uint64) error {
	res := make(chan error, 1)
	n.run(func(r *replica) { r.whenDurable(h, func(err error) { res <- err }) })
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) kickSyncer() {
	select {
	case n.durKick <- struct{}{}:
	default:
	}
}

func (n *Node) durableLoop(done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-n.durStop:
			n.syncOnce(true) // what was written before Close is synced, its waiters told, and a checkpoint saved
			n.run(func(r *replica) { r.closeDurable() })
			return
		case <-n.durKick:
			n.syncOnce(false)
		}
	}
}

// syncOnce syncs the store if something written is not durable yet, and
// saves a checkpoint if one is due, outside the step lock; the replica
// then runs the completions the sync covers.
func (n *Node) syncOnce(closing bool) {
	var target, cpHeight uint64
	var pending bool
	var cp []byte
	n.run(func(r *replica) { target, pending, cp, cpHeight = r.syncPlan(closing) })
	var err error
	if pending || cp != nil {
		err = n.store.Sync()
	}
	if err == nil && cp != nil {
		if cerr := n.store.SaveCheckpoint(cpHeight, cp); cerr != nil {
			// A checkpoint only speeds a restart up: the node goes on, and
			// tries again an interval later.
			n.log.Warn("ledger: checkpoint not saved", "height", cpHeight, "err", cerr)
		}
	}
	n.run(func(r *replica) { r.syncDone(target, err == nil && cp != nil, cpHeight, err) })
}

// stopSyncer syncs what was written, completes what waited for it, and
// stops the sync goroutine.
func (n *Node) stopSyncer() {
	close(n.durStop)
	if n.durDone != nil {
		<-n.durDone
	}
}
