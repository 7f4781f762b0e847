package ledger

import (
	"bytes"
	"fmt"
	"iter"
	"slices"
)

// verifyChain verifies the chain that blocks yields, genesis first, from
// scratch: hashes, links, seals, transfers, funds and transfer IDs, the
// rules of Append. It holds the chain's bounded state and at most one
// sealed run (MaxBatch blocks) at a time, so a chain of any length
// verifies in bounded memory, fed from a store. The error is a
// *BlockError naming the first bad height, or the iterator's own error.
func verifyChain(blocks iter.Seq2[Block, error]) (*Chain, error) {
	var c *Chain
	var d *draft
	var run []Block // blocks since the last seal
	for b, err := range blocks {
		if err != nil {
			return nil, fmt.Errorf("ledger: read chain at height %d: %w", len(run)+chainLen(c), err)
		}
		if c == nil {
			if c, err = NewChain(b); err != nil {
				return nil, err
			}
			d = c.draft()
			continue
		}
		if err := d.add(b); err != nil {
			return nil, err
		}
		if run = append(run, b); !b.Sealed() {
			continue
		}
		if err := c.keys.verifySeals(run); err != nil {
			return nil, err
		}
		if err := c.apply(d, len(d.blocks)); err != nil {
			return nil, err
		}
		d, run = c.draft(), run[:0]
	}
	if c == nil {
		return nil, &BlockError{Height: 0, Err: fmt.Errorf("%w: empty chain", ErrBadGenesis)}
	}
	if err := d.unsealed(); err != nil {
		return nil, err
	}
	return c, nil
}

// chainLen returns c.Len(), or 0 for no chain.
func chainLen(c *Chain) int {
	if c == nil {
		return 0
	}
	return c.Len()
}

// newChainFrom builds a chain from blocks, genesis first, verifying each;
// the error is a *BlockError for the first bad block.
func newChainFrom(blocks []Block) (*Chain, error) {
	return verifyChain(func(yield func(Block, error) bool) {
		for _, b := range blocks {
			if !yield(b, nil) {
				return
			}
		}
	})
}

// sameState reports, as an error, how o differs from c in what the chain
// implies: the genesis, the head, the balances and the transfer-ID
// windows. The blocks each holds in memory do not count.
func (c *Chain) sameState(o *Chain) error {
	switch {
	case c.genesis.Hash != o.genesis.Hash:
		return fmt.Errorf("ledger: genesis %s, other chain has %s", c.genesis.Hash.Short(), o.genesis.Hash.Short())
	case c.head.Hash != o.head.Hash || c.head.Height != o.head.Height:
		return fmt.Errorf("ledger: head %d %s, other chain has %d %s", c.head.Height, c.head.Hash.Short(),
			o.head.Height, o.head.Hash.Short())
	case !slices.Equal(c.bal, o.bal):
		return fmt.Errorf("ledger: balances %v, other chain has %v", c.Balances(), o.Balances())
	case !bytes.Equal(c.appendState(nil), o.appendState(nil)):
		return fmt.Errorf("ledger: transfer-ID windows differ from the other chain's")
	}
	return nil
}
