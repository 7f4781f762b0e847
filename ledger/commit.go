package ledger

import (
	"context"
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
	inflight   map[TransferID]chan struct{} // the Submits running, by transfer ID
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
		life: life, stopLock: cancel, inflight: make(map[TransferID]chan struct{})}
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

// submitQueued queues t for the committer and waits for its outcome. The
// caller has registered t.ID in n.inflight; submitQueued removes it. A
// transfer whose ctx ends before the committer took it is withdrawn, never
// applied; once taken (the node holds the mutex then), it waits for its
// outcome.
func (n *Node) submitQueued(ctx context.Context, t Transfer) (Result, error) {
	defer func() {
		n.qmu.Lock()
		done := n.inflight[t.ID]
		delete(n.inflight, t.ID)
		n.qmu.Unlock()
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
			if failed := n.view().failed; failed != nil {
				// The node may keep the mutex (see keepMutex): what waits
				// fails now instead of waiting for it.
				batch := n.take()
				n.qmu.Unlock()
				finish(batch, Result{}, fmt.Errorf("%w: %w", ErrDiverged, failed))
				continue
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
				if err = n.syncRound(ctx); err != nil {
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
				n.commitBatch(batch, tok, granted)
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
// under tok (see replica.commit). The mutex is released on every path.
func (n *Node) commitBatch(batch []*request, tok lamportmutex.Token, granted time.Time) {
	n.run(func(r *replica) {
		n.tok, n.granted = tok, granted
		r.commit(batch, tok.Clock)
	})
}
