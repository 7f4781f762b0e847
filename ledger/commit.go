package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// DefaultMaxBatch is the group-commit batch bound when Config.MaxBatch is 0.
const DefaultMaxBatch = 256

// batcher is a Node's group commit: callers queue their transfers; one
// committer goroutine takes the mutex, commits every queued transfer it can
// (up to maxBatch) in one entry, and releases with all their blocks.
type batcher struct {
	maxBatch int

	qmu        sync.Mutex
	queue      []*request // submitted, not yet taken into a batch
	cancelLock func()     // withdraws the committer's Lock when the queue empties
	wake       chan struct{}
	stop       chan struct{}
	stopLock   context.CancelFunc
	stopped    chan struct{} // closed when the committer exits; nil before it starts
	life       context.Context
}

// request is one Submit waiting for a mutex entry.
type request struct {
	t     Transfer
	taken bool // in a batch being committed; guarded by qmu
	res   Result
	err   error
	done  chan struct{} // closed once res and err are final
}

func newBatcher(maxBatch int) batcher {
	life, cancel := context.WithCancel(context.Background())
	return batcher{maxBatch: maxBatch, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		life: life, stopLock: cancel}
}

// startCommitter starts the goroutine that commits queued transfers under
// l. Close stops it.
func (n *Node) startCommitter(l locker) {
	n.qmu.Lock()
	n.stopped = make(chan struct{})
	n.qmu.Unlock()
	go n.commitLoop(l)
}

// stopCommitter stops the committer, failing what is still queued with
// ErrClosed, and waits for it.
func (n *Node) stopCommitter() {
	n.qmu.Lock()
	stopped := n.stopped
	n.qmu.Unlock()
	close(n.stop)
	n.stopLock()
	if stopped != nil {
		<-stopped
	}
}

// run queues t for the committer and waits for its outcome. The caller has
// registered t.ID in n.inflight; run removes it. A transfer whose ctx ends
// before the committer took it is withdrawn, never applied; once taken
// (the node holds the mutex then), run waits for its outcome.
func (n *Node) run(ctx context.Context, t Transfer) (Result, error) {
	defer func() {
		n.mu.Lock()
		done := n.inflight[t.ID]
		delete(n.inflight, t.ID)
		n.mu.Unlock()
		close(done)
	}()
	r := &request{t: t, done: make(chan struct{})}
	n.qmu.Lock()
	select {
	case <-n.stop:
		n.qmu.Unlock()
		return Result{}, ErrClosed
	default:
	}
	n.queue = append(n.queue, r)
	n.qmu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
	}
	n.qmu.Lock()
	if r.taken {
		n.qmu.Unlock()
		<-r.done
		return r.res, r.err
	}
	n.queue = slices.DeleteFunc(n.queue, func(q *request) bool { return q == r })
	if len(n.queue) == 0 && n.cancelLock != nil {
		n.cancelLock() // nobody left to commit for: withdraw the request
	}
	n.qmu.Unlock()
	return Result{}, fmt.Errorf("ledger: transfer %s: take mutex: %w", t.ID, ctx.Err())
}

// commitLoop is the committer: while transfers are queued, it takes the
// mutex and commits a batch.
func (n *Node) commitLoop(l locker) {
	defer close(n.stopped)
	defer n.failQueued(ErrClosed)
	for {
		select {
		case <-n.stop:
			return
		case <-n.wake:
		}
		for {
			n.qmu.Lock()
			if len(n.queue) == 0 {
				n.qmu.Unlock()
				break
			}
			ctx, cancel := context.WithCancel(n.life)
			n.cancelLock = cancel
			n.qmu.Unlock()

			asked := time.Now()
			tok, err := l.Lock(ctx)
			granted := time.Now()
			if err == nil {
				n.emit(Event{Kind: EventLockGranted, Clock: tok.Clock, Elapsed: granted.Sub(asked)})
				// After a restart anywhere, first get every block a peer has.
				if err = n.syncRound(ctx, l); err != nil {
					if uerr := l.Unlock(nil); uerr != nil {
						n.log.Error("ledger: release mutex after a failed sync round", "err", uerr)
					}
					n.emit(Event{Kind: EventLockReleased, Clock: tok.Clock, Elapsed: time.Since(granted)})
				}
			}

			n.qmu.Lock()
			n.cancelLock = nil
			// Withdrawn because every caller gave up: a transfer queued since
			// then must not inherit that; it gets a Lock of its own.
			withdrawn := err != nil && ctx.Err() != nil && n.life.Err() == nil
			var batch []*request
			if !withdrawn {
				batch = n.take()
			}
			n.qmu.Unlock()
			cancel()
			switch {
			case err != nil && n.life.Err() != nil:
				finish(batch, Result{}, ErrClosed)
				return
			case withdrawn:
			case err != nil: // e.g. the mutex was closed
				finish(batch, Result{}, fmt.Errorf("ledger: take mutex: %w", err))
			case len(batch) == 0: // granted as every caller gave up
				if uerr := l.Unlock(nil); uerr != nil {
					n.log.Error("ledger: release unused mutex", "err", uerr)
				}
				n.emit(Event{Kind: EventLockReleased, Clock: tok.Clock, Elapsed: time.Since(granted)})
			default:
				n.commitBatch(l, batch, tok, granted)
			}
		}
	}
}

// take moves up to maxBatch requests from the queue into a batch. n.qmu
// must be held.
func (n *Node) take() []*request {
	k := min(len(n.queue), n.maxBatch)
	batch := slices.Clone(n.queue[:k])
	n.queue = slices.Delete(n.queue, 0, k)
	for _, r := range batch {
		r.taken = true
	}
	return batch
}

// failQueued ends every queued request with err.
func (n *Node) failQueued(err error) {
	n.qmu.Lock()
	batch := n.take()
	for len(n.queue) > 0 {
		batch = append(batch, n.take()...)
	}
	n.qmu.Unlock()
	finish(batch, Result{}, err)
}

func finish(batch []*request, res Result, err error) {
	for _, r := range batch {
		r.res, r.err = res, err
	}
	complete(batch)
}

// complete tells the batch's callers that their outcomes are final.
func complete(batch []*request) {
	for _, r := range batch {
		close(r.done)
	}
}

// commitBatch commits the batch's transfers while this node holds the mutex
// under tok: it builds their blocks in order (a transfer the balance cannot
// pay is refused, the others go ahead), persists them with one store
// append, inserts them, and releases the mutex with all of them as the
// payload. The mutex is released on every path.
func (n *Node) commitBatch(l locker, batch []*request, tok lamportmutex.Token, granted time.Time) {
	n.writeMu.Lock()
	n.mu.RLock()
	err := n.usable()
	if err == nil {
		n.dropPending()
	}
	var blocks []Block
	var refused, made []*request
	var d *draft
	if err == nil {
		d = n.chain.draft()
		for _, r := range batch {
			if res, rerr, done := n.outcome(r.t); done { // a received block may hold r's ID
				r.res, r.err = res, rerr
				continue
			}
			before := d.table()
			blk, berr := d.next(r.t, tok.Clock)
			var be *BlockError
			if errors.As(berr, &be) {
				berr = be.Err // t was validated: this says why the block cannot be made
			}
			if berr != nil {
				r.err = berr
				if errors.Is(berr, ErrInsufficientFunds) {
					r.err = fmt.Errorf("ledger: transfer %s: %w", r.t.ID, berr)
					refused = append(refused, r)
				}
				continue
			}
			r.res = Result{Transfer: r.t, Block: blk, Before: before, After: d.table()}
			blocks = append(blocks, blk)
			made = append(made, r)
		}
		if len(blocks) > 0 {
			// One seal for the batch: it covers the earlier blocks through
			// their hash links.
			blocks[len(blocks)-1] = d.seal(n.signer)
			made[len(made)-1].res.Block = blocks[len(blocks)-1]
		}
	}
	n.mu.RUnlock()
	if err != nil {
		n.writeMu.Unlock()
		if uerr := l.Unlock(nil); uerr != nil {
			err = errors.Join(err, fmt.Errorf("ledger: release mutex: %w", uerr))
		}
		n.emit(Event{Kind: EventLockReleased, Clock: tok.Clock, Elapsed: time.Since(granted)})
		finish(batch, Result{}, err)
		return
	}
	committed := blocks
	if len(blocks) > 0 {
		if perr := n.persist(blocks); perr != nil {
			perr = fmt.Errorf("ledger: persist blocks %d-%d: %w", blocks[0].Height, blocks[len(blocks)-1].Height, perr)
			for _, r := range made {
				r.res, r.err = Result{}, perr
			}
			committed = nil
		}
	}
	n.mu.Lock()
	for _, r := range refused {
		n.reject(r.t, r.err)
	}
	var aerr error
	if len(committed) > 0 {
		aerr = n.appendLocked(d, len(committed)) // cannot fail: drafted under writeMu
		n.headFrom = ""
	}
	n.mu.Unlock()
	if aerr != nil {
		n.fail(fmt.Errorf("own blocks %d-%d persisted but not inserted: %w",
			committed[0].Height, committed[len(committed)-1].Height, aerr))
	}
	n.writeMu.Unlock()
	for _, blk := range committed {
		n.log.Debug("block committed", "height", blk.Height, "hash", blk.Hash.Short(), "clock", blk.Clock,
			"to", blk.Transfer.To, "amount", blk.Transfer.Amount)
		n.emit(Event{Kind: EventBlockInserted, Block: blk, From: n.id, Local: true})
	}

	var payload []byte
	if len(committed) > 0 {
		payload, err = EncodeBatch(committed)
		if err != nil { // cannot happen: at most maxBatch valid blocks
			n.fail(fmt.Errorf("encode batch: %w", err))
			payload = nil
		}
	}
	if uerr := l.Unlock(payload); uerr != nil {
		uerr = fmt.Errorf("ledger: release mutex: %w", uerr)
		if payload != nil {
			n.fail(fmt.Errorf("blocks %d-%d are committed here but their release failed, so peers may lack them: %w",
				committed[0].Height, committed[len(committed)-1].Height, uerr))
			uerr = fmt.Errorf("%w: %w", ErrDiverged, uerr)
		}
		for _, r := range batch {
			r.err = errors.Join(r.err, uerr)
		}
	}
	n.emit(Event{Kind: EventLockReleased, Clock: tok.Clock, Blocks: len(committed), Elapsed: time.Since(granted)})
	// Success, new or Duplicate, is reported once this node's disk has
	// the blocks.
	var durable uint64
	for _, r := range batch {
		if r.err == nil {
			durable = max(durable, r.res.Block.Height)
		}
	}
	if durable == 0 {
		complete(batch)
		return
	}
	n.whenDurable(durable, func(err error) {
		if err != nil {
			for _, r := range batch {
				if r.err == nil {
					r.res, r.err = Result{}, fmt.Errorf("ledger: transfer %s: %w", r.t.ID, err)
				}
			}
		}
		complete(batch)
	})
}

// persist writes blocks to the store; under SyncBeforeRelease it also
// syncs them. n.writeMu must be held.
func (n *Node) persist(blocks []Block) error {
	if err := n.store.Append(blocks...); err != nil {
		return err
	}
	if n.durability == SyncBeforeRelease {
		if err := n.store.Sync(); err != nil {
			return err
		}
	}
	n.wrote(blocks[len(blocks)-1].Height)
	return nil
}

// reject remembers that t was refused with err, for a retry of its ID: the
// newest IDWindow refusals are kept, the oldest forgotten first. n.mu must
// be held.
func (n *Node) reject(t Transfer, err error) {
	if _, ok := n.rejected[t.ID]; ok {
		return
	}
	if len(n.refusals) < IDWindow {
		n.refusals = append(n.refusals, t.ID)
	} else { // a ring: refusals[nextRefusal] is the oldest
		delete(n.rejected, n.refusals[n.nextRefusal])
		n.refusals[n.nextRefusal] = t.ID
		n.nextRefusal = (n.nextRefusal + 1) % IDWindow
	}
	n.rejected[t.ID] = rejection{t: t, err: err}
}
