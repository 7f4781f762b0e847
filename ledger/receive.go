package ledger

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// MaxPending bounds the received blocks a node holds while it waits for
// an earlier block; beyond it, the node drops the newest and fetches them
// again by catch-up.
const MaxPending = 1024

// received is a block and the peer that sent it, with its release or by
// catch-up (fetched).
type received struct {
	from    string
	blk     Block
	fetched bool
}

// HandleRelease handles the payload of a peer's release: pass it as the
// mutex's OnRelease handler (Node.MutexConfig does). An empty payload (a
// release with no transfer) is nothing to do. Otherwise the payload is a
// batch of blocks whose sender is the releasing peer, sealed once, at its
// last block, with that peer's key (see Block.Sig); each must extend this
// node's chain: its height, previous hash and hash must match, its sender
// must be a member able to pay. They are persisted, then inserted. A block
// this node already has (catch-up can bring it first) is skipped.
//
// Releases from different peers may arrive in any order (the transport
// orders only each pair), so a block may arrive before an earlier one from
// another peer. Such a block is held and inserted as soon as the gap is
// filled; beyond MaxPending held blocks, the newest are dropped and fetched
// again by catch-up. The mutex guarantees that by the
// time this node is granted the lock, every earlier block has arrived
// (after a restart, with the catch-up round's help); Transfer fails the
// node if that guarantee is ever broken.
//
// After Close a payload is ignored (nil is returned): the node is shutting
// down, and its next incarnation fetches the block from its peers.
//
// A block that fails is never skipped in silence: the error is logged,
// reported as an EventFailed, and returned (wrapping ErrDiverged and the
// cause, e.g. a *BlockError or a *ConflictError); and the node stops taking
// transfers (Err returns the cause) rather than diverge from its peers.
func (n *Node) HandleRelease(from string, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	if err := n.acceptable(from); errors.Is(err, ErrClosed) {
		// Shutting down: the next incarnation fetches it from the peers.
		n.log.Debug("ledger: release payload ignored after Close", "from", from)
		return nil
	} else if err != nil {
		return err
	}
	blocks, err := DecodeBatch(payload)
	if err == nil {
		err = checkRelease(from, blocks)
	}
	if err == nil {
		err = n.keys.verifySeals(blocks)
	}
	if err != nil {
		return n.fail(fmt.Errorf("release from %s: %w", from, err))
	}
	return n.accept(from, blocks, false)
}

// acceptable says why the node takes no more blocks, if it does not.
func (n *Node) acceptable(from string) error {
	n.mu.RLock()
	closed, failed := n.closed, n.failed
	n.mu.RUnlock()
	if closed {
		return fmt.Errorf("ledger: block from %s after Close: %w", from, ErrClosed)
	}
	if failed != nil {
		err := fmt.Errorf("ledger: block from %s ignored: %w: %w", from, ErrDiverged, failed)
		n.log.Error("ledger: block received after failure", "from", from, "err", err)
		return err
	}
	return nil
}

// accept takes blocks that came from peer from, in chain order: with its
// release (the blocks must spend from from), or by catch-up (fetched).
// Blocks this node has are checked to be the same and skipped; the others
// are held until they extend the head, then verified, persisted and
// inserted. The caller has checked that the node is acceptable; n.writeMu
// must be held.
func (n *Node) accept(from string, blocks []Block, fetched bool) error {
	n.mu.RLock()
	head := n.chain.Head().Height
	n.mu.RUnlock()
	for _, blk := range blocks {
		if !fetched && blk.Transfer.From != from {
			return n.fail(fmt.Errorf("block %d from %s: %w: it spends from %q",
				blk.Height, from, ErrNotOwner, blk.Transfer.From))
		}
		if blk.Height <= head {
			n.mu.RLock()
			own, _ := n.chain.Block(blk.Height)
			n.mu.RUnlock()
			if own.Hash != blk.Hash {
				return n.fail(&ConflictError{Height: blk.Height, Ours: own.Hash, Theirs: blk.Hash, Peer: from})
			}
			continue // caught up already
		}
		if other, dup := n.pending[blk.Height]; dup {
			if other.blk.Hash == blk.Hash {
				continue
			}
			return n.fail(fmt.Errorf("block %d from %s: %w: peer %s sent another block %d",
				blk.Height, from, &ConflictError{Height: blk.Height, Ours: other.blk.Hash, Theirs: blk.Hash, Peer: from},
				other.from, blk.Height))
		}
		n.pending[blk.Height] = received{from: from, blk: blk, fetched: fetched}
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
	n.trimPending(head + uint64(len(run)))
	if len(run) == 0 {
		if len(blocks) > 0 && blocks[len(blocks)-1].Height > head {
			n.log.Debug("blocks held until an earlier one arrives", "from", from, "first", blocks[0].Height, "head", head)
		}
		return nil
	}
	return n.insert(run)
}

// trimPending bounds the blocks held ahead of a gap to MaxPending: a node
// that far behind drops the newest blocks that came with releases, and
// asks its peers for what it lacks (an announcement now, a sync round
// before its next append), instead of holding all of them. Blocks fetched
// by catch-up are kept: a peer sends them once, after what it sent before.
// n.writeMu must be held.
func (n *Node) trimPending(head uint64) {
	if len(n.pending) <= MaxPending {
		return
	}
	heights := slices.Sorted(maps.Keys(n.pending))
	dropped := 0
	for i := len(heights) - 1; i >= 0 && len(n.pending) > MaxPending; i-- {
		if !n.pending[heights[i]].fetched {
			delete(n.pending, heights[i])
			dropped++
		}
	}
	if dropped == 0 {
		return // all fetched: they came in order from peers, and will go in
	}
	n.log.Warn("ledger: too many blocks wait for an earlier one; dropped the newest and asked the peers",
		"head", head, "dropped", dropped, "held", len(n.pending))
	n.needSync()
	n.post(inbound{announce: true})
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
	if bad == nil {
		for _, r := range run[d.sealed():] {
			n.pending[r.blk.Height] = r // their seal was dropped from pending: it comes again
		}
	}
	run = run[:d.sealed()] // the valid, sealed prefix is inserted even if a later block fails
	if len(run) > 0 {
		if err := n.store.Append(d.blocks[:len(run)]...); err != nil {
			return n.fail(fmt.Errorf("persist blocks %d-%d: %w", run[0].blk.Height, run[len(run)-1].blk.Height, err))
		}
		n.mu.Lock()
		err = n.appendLocked(d, len(run)) // cannot fail: drafted under writeMu
		n.mu.Unlock()
		if err != nil {
			return n.fail(fmt.Errorf("blocks persisted but not inserted: %w", err))
		}
	}
	for _, r := range run {
		n.log.Debug("block received", "from", r.from, "height", r.blk.Height, "hash", r.blk.Hash.Short(), "clock", r.blk.Clock)
		n.emit(Event{Kind: EventBlockInserted, Block: r.blk, From: r.from, Fetched: r.fetched})
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
