package ledger

import (
	"errors"
	"fmt"
)

// commit commits the batch's transfers while this node holds the mutex
// under clock: it builds their blocks in order (a transfer the balance
// cannot pay is refused, the others go ahead), persists them with one
// store append, inserts them, and releases the mutex with all of them as
// the payload. The mutex is released on every path. Each request's
// outcome is completed once this node's store has synced its block.
func (r *replica) commit(batch []*request, clock uint64) {
	if err := r.usable(); err != nil {
		for _, q := range batch {
			q.res, q.err = Result{}, err
		}
		r.release(batch, nil, nil)
		return
	}
	r.dropPending()
	var blocks []Block
	var made []*request
	d := r.chain.draft()
	for _, q := range batch {
		if res, err, done := r.outcome(q.t); done { // a received block may hold q's ID
			q.res, q.err = res, err
			continue
		}
		before := d.table()
		blk, err := d.next(q.t, clock)
		var be *BlockError
		if errors.As(err, &be) {
			err = be.Err // t was validated: this says why the block cannot be made
		}
		if err != nil {
			q.err = err
			if errors.Is(err, ErrInsufficientFunds) {
				q.err = fmt.Errorf("ledger: transfer %s: %w", q.t.ID, err)
				r.reject(q.t, q.err)
			}
			continue
		}
		q.res = Result{Transfer: q.t, Block: blk, Before: before, After: d.table()}
		blocks = append(blocks, blk)
		made = append(made, q)
	}
	if len(blocks) == 0 {
		r.release(batch, nil, nil)
		return
	}
	// One seal for the batch: it covers the earlier blocks through their
	// hash links.
	blocks[len(blocks)-1] = d.seal(r.signer)
	made[len(made)-1].res.Block = blocks[len(blocks)-1]
	r.persist(blocks, func() {
		if err := r.chain.apply(d, len(blocks)); err != nil {
			panic(fmt.Sprintf("ledger: own blocks drafted in one step persisted but not inserted: %v", err))
		}
		r.headFrom = ""
		for _, blk := range blocks {
			r.log.Debug("block committed", "height", blk.Height, "hash", blk.Hash.Short(), "clock", blk.Clock,
				"to", blk.Transfer.To, "amount", blk.Transfer.Amount)
			r.emit(Event{Kind: EventBlockInserted, Block: blk, From: r.id, Local: true})
		}
		payload, err := EncodeBatch(blocks)
		if err != nil {
			panic(fmt.Sprintf("ledger: encode a batch of %d valid blocks: %v", len(blocks), err))
		}
		r.release(batch, blocks, payload)
	}, func(err error) {
		err = fmt.Errorf("ledger: persist blocks %d-%d: %w", blocks[0].Height, blocks[len(blocks)-1].Height, err)
		if errors.Is(err, errUnsynced) {
			r.keepMutex(batch, err)
			return
		}
		for _, q := range made {
			q.res, q.err = Result{}, err
		}
		r.release(batch, nil, nil)
	})
}

// release queues the mutex's release with payload, which carries
// committed, and then the completion of the batch: at once for a batch
// that failed, else once the store's sync covers its newest block.
func (r *replica) release(batch []*request, committed []Block, payload []byte) {
	r.do(action{kind: actRelease, payload: payload, from: uint64(len(committed)), then: func(uerr error) {
		if uerr != nil {
			uerr = fmt.Errorf("ledger: release mutex: %w", uerr)
			if payload != nil {
				_ = r.fail(fmt.Errorf("blocks %d-%d are committed here but their release failed, so peers may lack them: %w",
					committed[0].Height, committed[len(committed)-1].Height, uerr))
				uerr = fmt.Errorf("%w: %w", ErrDiverged, uerr)
			}
			for _, q := range batch {
				q.err = errors.Join(q.err, uerr)
			}
		}
		// Success, new or Duplicate, is reported once this node's disk has
		// the blocks.
		var durable uint64
		for _, q := range batch {
			if q.err == nil {
				durable = max(durable, q.res.Block.Height)
			}
		}
		if durable == 0 {
			r.do(action{kind: actDone, waits: []syncWait{{done: func(error) { complete(batch) }}}})
			return
		}
		r.whenDurable(durable, func(err error) {
			if err != nil {
				for _, q := range batch {
					if q.err == nil {
						q.res, q.err = Result{}, fmt.Errorf("ledger: transfer %s: %w", q.t.ID, err)
					}
				}
			}
			complete(batch)
		})
	}})
}

// keepMutex stops the node without releasing the mutex, after the sync of
// the batch's blocks failed under SyncBeforeRelease: the store may keep
// them, and no peer has them, so a release would let a peer build other
// blocks at their heights, and this node come back with a fork. The peers
// wait for its next incarnation; the sync round that its PeerUp calls
// for fetches whatever of the blocks survived. The batch's outcomes are
// unknown: they fail with ErrDiverged.
func (r *replica) keepMutex(batch []*request, cause error) {
	err := r.fail(cause)
	for _, q := range batch {
		if q.err == nil {
			q.res, q.err = Result{}, err
		}
	}
	r.do(action{kind: actDone, waits: []syncWait{{done: func(error) { complete(batch) }}}})
}
