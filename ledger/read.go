package ledger

import (
	"bytes"
	"context"
	"fmt"
)

// Balance returns client id's balance in the local table, at once and
// without the mutex: it reflects every block this node has inserted.
func (n *Node) Balance(id string) (int64, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	v, ok := n.chain.Balance(id)
	if !ok {
		return 0, fmt.Errorf("ledger: %w: %q", ErrUnknownClient, id)
	}
	return v, nil
}

// Balances returns a snapshot of the local balance table.
func (n *Node) Balances() Balances {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.chain.Balances()
}

// Blocks returns a snapshot of the local chain, genesis first, read from
// the store.
func (n *Node) Blocks() []Block {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	blocks, err := n.store.Blocks()
	if err != nil {
		return []Block{n.Genesis()}
	}
	return blocks
}

// block returns the block at height h of the local chain: from the
// chain's recent window, or else from the store. n.mu must be held.
func (n *Node) block(h uint64) (Block, bool) {
	if b, ok := n.chain.Block(h); ok || h > n.chain.Head().Height {
		return b, ok
	}
	blocks, err := n.store.Blocks()
	if err != nil || h >= uint64(len(blocks)) {
		return Block{}, false
	}
	return blocks[h], true
}

// blocksFrom returns the blocks of the local chain from height start to
// the head: from the chain's recent window, or else from the store. n.mu
// must be held.
func (n *Node) blocksFrom(start uint64) []Block {
	head := n.chain.Head().Height
	if start > head {
		return nil
	}
	if _, ok := n.chain.Block(start); ok {
		out := make([]Block, 0, head-start+1)
		for h := start; h <= head; h++ {
			b, _ := n.chain.Block(h)
			out = append(out, b)
		}
		return out
	}
	blocks, err := n.store.Blocks()
	if err != nil || uint64(len(blocks)) <= head {
		return nil
	}
	return blocks[start : head+1]
}

// Head returns the newest block of the local chain.
func (n *Node) Head() Block {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.chain.Head()
}

// WaitHeight blocks until the local chain's head is at least at height h,
// ctx ends (its error is returned) or the node is closed (ErrClosed). The
// holder's block reaches the other nodes with its release, so a caller that
// wants every replica to have a transfer waits for its height on each.
func (n *Node) WaitHeight(ctx context.Context, h uint64) error {
	for {
		n.mu.RLock()
		head, closed, grown := n.chain.Head().Height, n.closed, n.grown
		n.mu.RUnlock()
		switch {
		case head >= h:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-grown:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendLocked appends the first k blocks of d, a draft of the chain
// (see Chain.apply), and wakes WaitHeight callers. n.mu must be held for
// writing.
func (n *Node) appendLocked(d *draft, k int) error {
	if err := n.chain.apply(d, k); err != nil {
		return err
	}
	close(n.grown)
	n.grown = make(chan struct{})
	return nil
}

// Genesis returns block 0, whose hash names the ledger.
func (n *Node) Genesis() Block {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.chain.Genesis()
}

// Verify re-checks the local chain from genesis, as the store holds it,
// and checks that it implies the state the node holds (head, balances,
// transfer-ID windows). The error is a *BlockError for the first bad
// height.
func (n *Node) Verify() error {
	n.writeMu.Lock()
	blocks, err := n.store.Blocks()
	n.mu.RLock()
	state, head := n.chain.appendState(nil), n.chain.Head()
	n.mu.RUnlock()
	n.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("ledger: read store: %w", err)
	}
	c, err := newChainFrom(blocks)
	if err != nil {
		return err
	}
	if !bytes.Equal(c.appendState(nil), state) {
		return fmt.Errorf("ledger: the chain's state differs from the store's: head %d %s, store's head %d %s",
			head.Height, head.Hash.Short(), c.Head().Height, c.Head().Hash.Short())
	}
	return nil
}

// Err returns why the node stopped taking transfers, or nil while it works.
func (n *Node) Err() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.failed
}

// Close stops the node and closes its store: the committer finishes the
// batch it holds the mutex for (and releases the mutex), transfers still
// queued fail with ErrClosed, the goroutines SetLocker started stop, and
// the events already queued are delivered to Config.OnEvent before Close
// returns, unless the subscriber takes longer than eventCloseWait for them
// (see Config.OnEvent).
// Close the node before its mutex, so that the mutex is released. Later
// Transfers return ErrClosed; later release payloads are ignored.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	n.closed = true
	close(n.grown) // wake WaitHeight callers; nothing appends after Close
	n.grown = make(chan struct{})
	n.mu.Unlock()
	n.stopCommitter()
	n.stopSyncLoop()
	n.writeMu.Lock()
	err := n.store.Close()
	n.writeMu.Unlock()
	n.stopEvents()
	return err
}
