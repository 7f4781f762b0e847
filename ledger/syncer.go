package ledger

import (
	"context"
	"fmt"
	"sync"
)

// syncer makes the store durable in the background, for SyncAfterRelease:
// one goroutine calls Store.Sync for everything written since its last
// call (a group: every batch and every received block written meanwhile
// shares the one sync), then completes the Transfers whose blocks the sync
// covered. Nothing waits for it while holding the mutex.
//
// Safety rests on the store's being append-only: a sync that covers height
// h covers every block below h too, so what survives a power loss is a
// prefix of the chain, and a Transfer that reported success has its block,
// and every block before it, on this client's disk.
type syncer struct {
	symu       sync.Mutex
	checkpoint uint64 // the height of the newest checkpoint saved or tried
	written    uint64 // the highest height appended to the store
	durable    uint64 // the highest height a Sync covered
	waits      []syncWait
	durErr     error         // the first failed Sync; the node has stopped
	durClosed  bool          // the goroutine has stopped: nothing more becomes durable
	durKick    chan struct{} // buffered 1: something was written or awaits a sync
	durStop    chan struct{}
	durDone    chan struct{} // closed when the goroutine exits; nil before it starts
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

// startSyncer starts the sync goroutine; stopSyncer stops it.
func (n *Node) startSyncer() {
	n.symu.Lock()
	n.durDone = make(chan struct{})
	n.written = n.chain.Head().Height // what was loaded is on the disk
	n.durable = n.written
	n.symu.Unlock()
	go n.durableLoop()
}

// wrote notes that the store holds blocks up to height h, and has them
// synced in the background under SyncAfterRelease, and a checkpoint saved
// when one is due.
func (n *Node) wrote(h uint64) {
	n.symu.Lock()
	n.written = max(n.written, h)
	if n.durability == SyncBeforeRelease {
		n.durable = n.written // the writer synced
	}
	due := n.written >= n.checkpoint+CheckpointInterval
	n.symu.Unlock()
	if n.durability == SyncAfterRelease || due {
		n.kickSyncer()
	}
}

// awaitDurable waits until the store's sync covers height h, ctx ends, or
// the node closes (ErrClosed).
func (n *Node) awaitDurable(ctx context.Context, h uint64) error {
	res := make(chan error, 1)
	n.whenDurable(h, func(err error) { res <- err })
	select {
	case err := <-res:
		return err
	default:
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// whenDurable runs done once the store's sync covers height h: at once if
// it does already, else on the sync goroutine. done gets the sync's error
// if it failed, or ErrClosed if the node closed first. done must not block.
func (n *Node) whenDurable(h uint64, done func(error)) {
	n.symu.Lock()
	switch {
	case n.durErr != nil:
		err := n.durErr
		n.symu.Unlock()
		done(err)
		return
	case h <= n.durable:
		n.symu.Unlock()
		done(nil)
		return
	case n.durClosed:
		n.symu.Unlock()
		done(ErrClosed)
		return
	}
	n.waits = append(n.waits, syncWait{height: h, done: done})
	n.symu.Unlock()
	n.kickSyncer()
}

func (n *Node) kickSyncer() {
	select {
	case n.durKick <- struct{}{}:
	default:
	}
}

func (n *Node) durableLoop() {
	defer close(n.durDone)
	for {
		select {
		case <-n.durStop:
			n.syncOnce(true) // what was written before Close is synced, its waiters told, and a checkpoint saved
			n.symu.Lock()
			waits := n.waits
			n.waits, n.durClosed = nil, true
			n.symu.Unlock()
			for _, w := range waits {
				w.done(ErrClosed)
			}
			return
		case <-n.durKick:
			n.syncOnce(false)
		}
	}
}

// syncOnce syncs the store if something written is not durable yet, runs
// the completions the sync covers, and saves a checkpoint if one is due
// (with closing, if the chain grew since the last one at all).
func (n *Node) syncOnce(closing bool) {
	n.symu.Lock()
	target, pending := n.written, n.written > n.durable && n.durErr == nil
	lastCP, failed := n.checkpoint, n.durErr != nil
	n.symu.Unlock()
	// The checkpoint's state is taken before the sync: every block it
	// covers was appended before it was inserted, so the sync covers it.
	var cp []byte
	var cpHeight uint64
	if !failed {
		n.mu.RLock()
		if h := n.chain.Head().Height; h >= lastCP+CheckpointInterval || closing && h > lastCP {
			cp, cpHeight = n.chain.checkpoint(n.signer), h
		}
		n.mu.RUnlock()
	}
	var err error
	if pending || cp != nil {
		if err = n.store.Sync(); err != nil {
			err = n.fail(fmt.Errorf("sync the store up to height %d: %w", target, err))
		}
	}
	if err == nil && cp != nil {
		if cerr := n.store.SaveCheckpoint(cpHeight, cp); cerr != nil {
			// A checkpoint only speeds a restart up: the node goes on, and
			// tries again an interval later.
			n.log.Warn("ledger: checkpoint not saved", "height", cpHeight, "err", cerr)
		}
		n.symu.Lock()
		n.checkpoint = cpHeight
		n.symu.Unlock()
	}
	n.symu.Lock()
	var due []syncWait
	switch {
	case err != nil:
		n.durErr = err
		due, n.waits = n.waits, nil
	default:
		n.durable = max(n.durable, target)
		keep := n.waits[:0]
		for _, w := range n.waits {
			if w.height <= n.durable {
				due = append(due, w)
			} else {
				keep = append(keep, w)
			}
		}
		clear(n.waits[len(keep):])
		n.waits = keep
	}
	n.symu.Unlock()
	for _, w := range due {
		w.done(err)
	}
}

// stopSyncer syncs what was written, completes what waited for it, and
// stops the sync goroutine.
func (n *Node) stopSyncer() {
	n.symu.Lock()
	done := n.durDone
	n.symu.Unlock()
	close(n.durStop)
	if done != nil {
		<-done
	}
}
