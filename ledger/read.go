package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Balance returns client id's balance in the local table, at once and
// without the mutex: it reflects every block this node has inserted.
func (n *Node) Balance(id string) (int64, error) {
	v, ok := n.view().balance(id)
	if !ok {
		return 0, fmt.Errorf("ledger: %w: %q", ErrUnknownClient, id)
	}
	return v, nil
}

// Balances returns a snapshot of the local balance table.
func (n *Node) Balances() Balances { return n.view().balances() }

// Blocks returns the local chain, genesis first. Blocks older than the
// chain's recent window are read from the store; a store that fails to
// read ends the list early. For a long chain, prefer BlocksFrom.
func (n *Node) Blocks() []Block {
	var out []Block
	for b, err := range n.BlocksFrom(0) {
		if err != nil {
			break
		}
		out = append(out, b)
	}
	return out
}

// BlocksFrom yields the blocks of the local chain from height from up to
// the head as it was when the iteration began, reading older ones from
// the store a few thousand at a time; it holds no lock while it yields.
func (n *Node) BlocksFrom(from uint64) iter.Seq2[Block, error] {
	return func(yield func(Block, error) bool) {
		head := n.Head().Height
		for h := from; h <= head; {
			to := min(head, h+MaxReadBlocks-1)
			blocks, err := n.readBlocks(h, to)
			if err != nil {
				yield(Block{}, err)
				return
			}
			for _, b := range blocks {
				if !yield(b, nil) {
					return
				}
			}
			h = to + 1
		}
	}
}

// readBlocks returns the blocks at heights from..to (at most MaxReadBlocks,
// all at most the head): from the chain's recent window if it holds them
// all, else from the store, read outside the step lock.
func (n *Node) readBlocks(from, to uint64) ([]Block, error) {
	n.step.Lock()
	out := n.windowBlocks(from, to)
	n.step.Unlock()
	if out != nil {
		return out, nil
	}
	return n.storeBlocks(from, to)
}

// windowBlocks returns the blocks from..to if the chain's recent window
// holds them all, else nil. n.step must be held.
func (n *Node) windowBlocks(from, to uint64) []Block {
	out := make([]Block, 0, to-from+1)
	for h := from; h <= to; h++ {
		b, ok := n.r.chain.Block(h)
		if !ok {
			return nil
		}
		out = append(out, b)
	}
	return out
}

func (n *Node) storeBlocks(from, to uint64) ([]Block, error) {
	blocks, err := n.store.Read(from, to)
	if err != nil {
		return nil, fmt.Errorf("ledger: read blocks %d-%d from the store: %w", from, to, err)
	}
	return blocks, nil
}

// Head returns the newest block of the local chain.
func (n *Node) Head() Block { return n.view().head }

// WaitHeight blocks until the local chain's head is at least at height h,
// ctx ends (its error is returned) or the node is closed (ErrClosed). The
// holder's block reaches the other nodes with its release, so a caller that
// wants every replica to have a transfer waits for its height on each.
func (n *Node) WaitHeight(ctx context.Context, h uint64) error {
	for {
		s := n.view()
		switch {
		case s.head.Height >= h:
			return nil
		case s.closed:
			return ErrClosed
		}
		select {
		case <-s.grown:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Genesis returns block 0, whose hash names the ledger.
func (n *Node) Genesis() Block { return n.r.chain.Genesis() }

// Verify re-checks the local chain from genesis, as the store holds it,
// reading it a few thousand blocks at a time, and checks that it implies
// the state the node holds (head, balances, transfer-ID windows). The
// error is a *BlockError for the first bad height.
func (n *Node) Verify() error {
	n.step.Lock()
	state, head := n.r.chain.appendState(nil), n.r.chain.Head()
	n.step.Unlock()
	// The store holds every block up to head, each written before it was
	// inserted, and it only ever appends after them: the scan needs no
	// lock, and the node goes on meanwhile.
	c, err := verifyStored(n.store, head.Height)
	if err != nil {
		return err
	}
	if !bytes.Equal(c.appendState(nil), state) {
		return fmt.Errorf("ledger: the chain's state differs from the store's: head %d %s, store's head %d %s",
			head.Height, head.Hash.Short(), c.Head().Height, c.Head().Hash.Short())
	}
	return nil
}

// Err returns why the node stopped taking transfers, or nil while it
// works: its own storage failed, a fork was proven (both wrap
// ErrDiverged), or its mutex stopped because the transport failed.
func (n *Node) Err() error {
	s := n.view()
	switch {
	case s.failed != nil:
		return s.failed
	case !s.closed && n.mutex != nil:
		return n.mutex.Err()
	}
	return nil
}

// LockState returns a snapshot of the node's mutex: its clock, its queue,
// and the peers a waiting request still needs to hear from.
func (n *Node) LockState() lamportmutex.State {
	if n.mutex == nil {
		return lamportmutex.State{}
	}
	return n.mutex.State()
}

// LockStats returns the counters of the node's mutex.
func (n *Node) LockStats() lamportmutex.Stats {
	if n.mutex == nil {
		return lamportmutex.Stats{}
	}
	return n.mutex.Stats()
}

// Close stops the node, in order: a committer that holds the mutex
// finishes its batch and releases the mutex with its blocks, a request for
// the mutex still waiting is withdrawn, and the transfers not committed
// fail with ErrClosed; what was written is synced, and the
// transfers that waited for it complete; the catch-up goroutine stops; the
// mutex closes, waiting up to ctx for the transport to deliver what it
// sent; then the transport and the store close. The events already queued
// are delivered to Config.OnEvent while ctx allows. Later Transfers return
// ErrClosed; a second Close returns nil.
func (n *Node) Close(ctx context.Context) error {
	closed := false
	n.run(func(r *replica) { closed, r.closed = r.closed, true }) // wakes WaitHeight callers; nothing appends after Close
	if closed {
		return nil
	}
	n.stopCommitter()
	n.stopSyncer()
	n.stopSyncLoop()
	var errs []error
	if n.mutex != nil {
		if err := n.mutex.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("ledger: close: %w", err))
		}
	}
	if n.transport != nil {
		if err := n.transport.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("ledger: close the transport: %w", err))
		}
	}
	errs = append(errs, n.closeStore())
	n.stopEvents(ctx)
	return errors.Join(errs...)
}

// closeStore closes the store once no handler can write to it.
func (n *Node) closeStore() error {
	n.step.Lock()
	defer n.step.Unlock()
	if err := n.store.Close(); err != nil {
		return fmt.Errorf("ledger: close the store: %w", err)
	}
	return nil
}
