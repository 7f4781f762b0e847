package ledger

import (
	"fmt"
)

// MaxPending bounds the received blocks a node holds while it waits for
// an earlier block; beyond it, the node fails.
const MaxPending = 1024

// received is a block and the peer whose release carried it.
type received struct {
	from string
	blk  Block
}

// HandleRelease handles the payload of a peer's release: pass it as the
// mutex's OnRelease handler. An empty payload (a release with no transfer)
// is nothing to do. Otherwise the payload must be a block whose sender is
// the releasing peer; it must extend this node's head: its height,
// previous hash and hash must match, its sender must be a member able to
// pay. It is persisted, then inserted.
//
// Releases from different peers may arrive in any order (the transport
// orders only each pair), so a block may arrive before an earlier one from
// another peer. Such a block is held, at most MaxPending of them, and
// inserted as soon as the gap is filled. The mutex guarantees that by the
// time this node is granted the lock, every earlier block has arrived;
// Transfer fails the node if that guarantee is ever broken.
//
// A block that fails is never skipped in silence: the error is logged,
// reported as an EventFailed, and returned (wrapping ErrDiverged and the
// cause, e.g. a *BlockError); and the node stops taking transfers (Err
// returns the cause) rather than diverge from its peers.
func (n *Node) HandleRelease(from string, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	n.writeMu.Lock()
	defer n.writeMu.Unlock()

	n.mu.RLock()
	closed, failed, head := n.closed, n.failed, n.chain.Head().Height
	n.mu.RUnlock()
	if closed {
		return fmt.Errorf("ledger: block from %s after Close: %w", from, ErrClosed)
	}
	if failed != nil {
		err := fmt.Errorf("ledger: block from %s ignored: %w: %w", from, ErrDiverged, failed)
		n.log.Error("ledger: block received after failure", "from", from, "err", err)
		return err
	}
	blocks, err := DecodeBatch(payload)
	if err != nil {
		return n.fail(fmt.Errorf("release from %s: %w", from, err))
	}
	for _, blk := range blocks {
		if blk.Transfer.From != from {
			return n.fail(fmt.Errorf("block %d from %s: %w: it spends from %q",
				blk.Height, from, ErrNotOwner, blk.Transfer.From))
		}
		if blk.Height <= head {
			return n.fail(fmt.Errorf("block from %s: %w", from,
				&BlockError{Height: head + 1, Err: fmt.Errorf("%w: got %d", ErrBadHeight, blk.Height)}))
		}
		if other, dup := n.pending[blk.Height]; dup {
			return n.fail(fmt.Errorf("block %d from %s: %w: peer %s also sent a block %d",
				blk.Height, from, ErrInvalidBlock, other.from, blk.Height))
		}
		if len(n.pending) >= MaxPending {
			return n.fail(fmt.Errorf("block %d from %s: %d blocks wait for block %d, which has not come",
				blk.Height, from, len(n.pending), head+1))
		}
		n.pending[blk.Height] = received{from: from, blk: blk}
	}
	var run []received
	for h := head + 1; ; h++ {
		r, ok := n.pending[h]
		if !ok {
			break
		}
		delete(n.pending, h)
		run = append(run, r)
	}
	if len(run) == 0 {
		n.log.Debug("blocks held until an earlier one arrives", "from", from, "first", blocks[0].Height, "head", head)
		return nil
	}
	return n.insert(run)
}

// insert verifies a run of received blocks that extends the head,
// persists them with one store append, then inserts them. n.writeMu must be
// held.
func (n *Node) insert(run []received) error {
	n.mu.RLock()
	d := n.chain.draft()
	var err error
	for _, r := range run {
		if err = d.add(r.blk); err != nil {
			err = fmt.Errorf("block from %s: %w", r.from, err)
			break
		}
	}
	n.mu.RUnlock()
	bad := err
	run = run[:len(d.blocks)] // the valid prefix is inserted even if a later block fails
	if len(run) > 0 {
		if err := n.store.Append(d.blocks...); err != nil {
			return n.fail(fmt.Errorf("persist blocks %d-%d: %w", run[0].blk.Height, run[len(run)-1].blk.Height, err))
		}
		n.mu.Lock()
		for _, r := range run {
			if err = n.appendLocked(r.blk); err != nil { // cannot happen: drafted under writeMu
				break
			}
		}
		n.mu.Unlock()
		if err != nil {
			return n.fail(fmt.Errorf("blocks persisted but not inserted: %w", err))
		}
	}
	for _, r := range run {
		n.log.Debug("block received", "from", r.from, "height", r.blk.Height, "hash", r.blk.Hash.Short(), "clock", r.blk.Clock)
		n.emit(Event{Kind: EventBlockInserted, Block: r.blk, From: r.from})
	}
	if bad != nil {
		return n.fail(bad)
	}
	return nil
}

// fail puts the node in the failed state (the first cause wins), logs and
// reports it, and returns the error for HandleRelease to return.
func (n *Node) fail(cause error) error {
	n.mu.Lock()
	first := n.failed == nil
	if first {
		n.failed = cause
	}
	n.mu.Unlock()
	err := fmt.Errorf("ledger: %w: %w", ErrDiverged, cause)
	n.log.Error("ledger: node stopped taking transfers", "err", cause)
	if first {
		n.emit(Event{Kind: EventFailed, Err: err})
	}
	return err
}

// emit calls OnEvent, one call at a time.
func (n *Node) emit(ev Event) {
	if n.onEvent == nil {
		return
	}
	n.eventMu.Lock()
	defer n.eventMu.Unlock()
	n.onEvent(ev)
}
