package ledger

import (
	"fmt"
	"iter"
)

// verifyChain verifies the chain that blocks yields, genesis first, from
// scratch: hashes, links, seals, transfers, funds and transfer IDs, the
// rules of Append. It holds the chain's bounded state and at most one
// sealed run (MaxBatch blocks) at a time, so a chain of any length
// verifies in bounded memory, fed from a store. The error is a
// *BlockError naming the first bad height, or the iterator's own error.
func verifyChain(blocks iter.Seq2[Block, error]) (*Chain, error) {
	var e *extender
	for b, err := range blocks {
		switch {
		case err != nil:
			return nil, fmt.Errorf("ledger: read chain at height %d: %w", e.height(), err)
		case e == nil:
			c, err := NewChain(b)
			if err != nil {
				return nil, err
			}
			e = c.extender()
		default:
			if err := e.add(b); err != nil {
				return nil, err
			}
		}
	}
	if e == nil {
		return nil, &BlockError{Height: 0, Err: fmt.Errorf("%w: empty chain", ErrBadGenesis)}
	}
	if err := e.finish(); err != nil {
		return nil, err
	}
	return e.c, nil
}

// extend appends the blocks that blocks yields, in chain order from the
// one after the head, verifying them as Append does; a restart feeds it
// the blocks after a checkpoint. Like verifyChain it holds at most one
// sealed run at a time. On error, c keeps every sealed run before the
// bad block.
func (c *Chain) extend(blocks iter.Seq2[Block, error]) error {
	e := c.extender()
	for b, err := range blocks {
		if err != nil {
			return fmt.Errorf("ledger: read chain at height %d: %w", e.height(), err)
		}
		if err := e.add(b); err != nil {
			return err
		}
	}
	return e.finish()
}

// extender appends blocks to a chain one at a time, verifying them as
// Append does: each sealed run is checked and appended when its seal
// arrives.
type extender struct {
	c   *Chain
	d   *draft
	run []Block // blocks since the last seal, at most MaxBatch
}

func (c *Chain) extender() *extender { return &extender{c: c, d: c.draft()} }

// height returns the height of the next block e expects.
func (e *extender) height() uint64 {
	if e == nil {
		return 0
	}
	return e.d.head.Height + 1
}

// add checks b against the chain and the open run, and appends the run
// once b seals it.
func (e *extender) add(b Block) error {
	if err := e.d.add(b); err != nil {
		return err
	}
	if e.run = append(e.run, b); !b.Sealed() {
		return nil
	}
	if err := e.c.keys.verifySeals(e.run); err != nil {
		return err
	}
	if err := e.c.apply(e.d, len(e.d.blocks)); err != nil {
		return err
	}
	e.d, e.run = e.c.draft(), e.run[:0]
	return nil
}

// finish reports blocks at the end that no seal covers.
func (e *extender) finish() error { return e.d.unsealed() }

// newChainFrom builds a chain from blocks, genesis first, verifying each;
// the error is a *BlockError for the first bad block.
func newChainFrom(blocks []Block) (*Chain, error) {
	return verifyChain(blockSeq(blocks))
}
