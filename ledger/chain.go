package ledger

import (
	"fmt"
	"slices"
)

// Chain is a verified sequence of blocks starting at a genesis, with the
// balance table it implies. Append admits only a block that extends the
// head correctly, so a Chain is always valid. A Chain is not safe for
// concurrent use; Node guards its own.
type Chain struct {
	blocks   []Block
	balances Balances
	ids      map[TransferID]uint64 // transfer ID -> height
}

// NewChain returns a chain holding only genesis, after checking it.
func NewChain(genesis Block) (*Chain, error) {
	b, err := genesisBalances(genesis)
	if err == nil && genesis.ComputeHash() != genesis.Hash {
		err = ErrBadHash
	}
	if err != nil {
		return nil, &BlockError{Height: 0, Err: err}
	}
	return &Chain{blocks: []Block{genesis}, balances: b, ids: make(map[TransferID]uint64)}, nil
}

// NewChainFrom builds a chain from blocks, genesis first, verifying each;
// the error is a *BlockError for the first bad block.
func NewChainFrom(blocks []Block) (*Chain, error) {
	if len(blocks) == 0 {
		return nil, &BlockError{Height: 0, Err: fmt.Errorf("%w: empty chain", ErrBadGenesis)}
	}
	c, err := NewChain(blocks[0])
	if err != nil {
		return nil, err
	}
	for _, b := range blocks[1:] {
		if err := c.Append(b); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// VerifyBlocks verifies blocks from genesis (hashes, links,
// transfers, funds) and returns the resulting balance table. The error is a
// *BlockError naming the first bad height.
func VerifyBlocks(blocks []Block) (Balances, error) {
	c, err := NewChainFrom(blocks)
	if err != nil {
		return nil, err
	}
	return c.balances, nil
}

// Genesis returns block 0.
func (c *Chain) Genesis() Block { return c.blocks[0] }

// Head returns the newest block.
func (c *Chain) Head() Block { return c.blocks[len(c.blocks)-1] }

// Len returns the number of blocks, genesis included.
func (c *Chain) Len() int { return len(c.blocks) }

// Block returns the block at height h.
func (c *Chain) Block(h uint64) (Block, bool) {
	if h >= uint64(len(c.blocks)) {
		return Block{}, false
	}
	return c.blocks[h], true
}

// Blocks returns a copy of the blocks, genesis first.
func (c *Chain) Blocks() []Block { return slices.Clone(c.blocks) }

// Balances returns a copy of the balance table at the head.
func (c *Chain) Balances() Balances { return c.balances.Clone() }

// Balance returns id's balance at the head, and whether id is a member.
func (c *Chain) Balance(id string) (int64, bool) {
	v, ok := c.balances[id]
	return v, ok
}

// TransferHeight returns the height of the block holding transfer id.
func (c *Chain) TransferHeight(id TransferID) (uint64, bool) {
	h, ok := c.ids[id]
	return h, ok
}

// Next builds the block that would append t at the head under the mutex
// token clock; it checks t (members, amount, funds) but does not append.
func (c *Chain) Next(t Transfer, clock uint64) (Block, error) {
	head := c.Head()
	b := Block{Height: head.Height + 1, Prev: head.Hash, Clock: clock, Transfer: t}
	b.Hash = b.ComputeHash()
	if err := c.Check(b); err != nil {
		return Block{}, err
	}
	return b, nil
}

// Check reports whether b would extend the chain: its height, Prev, Hash,
// a transfer ID not yet in the chain, and the transfer's validity and
// funds. The error is a *BlockError.
//
// Clock is recorded but not checked: a peer that restarts may be granted
// the mutex with a token clock below the head's.
func (c *Chain) Check(b Block) error {
	return checkNext(c.Head(), c.balances, c.TransferHeight, b)
}

// checkNext is Check against any head, table and transfer-ID index.
func checkNext(head Block, bal Balances, seen func(TransferID) (uint64, bool), b Block) error {
	want := head.Height + 1
	var err error
	switch {
	case b.Height != want:
		err = fmt.Errorf("%w: got %d", ErrBadHeight, b.Height)
	case b.Prev != head.Hash:
		err = fmt.Errorf("%w: got %s, want %s", ErrBadPrev, b.Prev.Short(), head.Hash.Short())
	case b.Accounts != nil:
		err = fmt.Errorf("%w: accounts in a transfer block", ErrMalformedBlock)
	case b.ComputeHash() != b.Hash:
		err = ErrBadHash
	default:
		if h, dup := seen(b.Transfer.ID); dup {
			err = fmt.Errorf("%w: %s at height %d", ErrDuplicateTransfer, b.Transfer.ID, h)
		} else {
			err = bal.Check(b.Transfer)
		}
	}
	if err != nil {
		return &BlockError{Height: want, Err: err}
	}
	return nil
}

// draft extends a Chain in scratch space: blocks checked against the chain
// and against each other, not yet appended. A batch is drafted, persisted,
// and only then appended, so the chain never holds a block the store lacks.
type draft struct {
	c        *Chain
	head     Block
	balances Balances
	ids      map[TransferID]uint64
	blocks   []Block
}

func (c *Chain) draft() *draft {
	return &draft{c: c, head: c.Head(), balances: c.balances.Clone(), ids: map[TransferID]uint64{}}
}

// seen reports the height of a transfer ID in the chain or the draft.
func (d *draft) seen(id TransferID) (uint64, bool) {
	if h, ok := d.ids[id]; ok {
		return h, true
	}
	return d.c.TransferHeight(id)
}

// add checks b against the draft's head and applies it.
func (d *draft) add(b Block) error {
	if err := checkNext(d.head, d.balances, d.seen, b); err != nil {
		return err
	}
	if err := d.balances.Apply(b.Transfer); err != nil { // cannot fail after the check
		return &BlockError{Height: b.Height, Err: err}
	}
	d.ids[b.Transfer.ID] = b.Height
	d.head = b
	d.blocks = append(d.blocks, b)
	return nil
}

// next builds the block appending t at the draft's head, and adds it.
func (d *draft) next(t Transfer, clock uint64) (Block, error) {
	b := Block{Height: d.head.Height + 1, Prev: d.head.Hash, Clock: clock, Transfer: t}
	b.Hash = b.ComputeHash()
	if err := d.add(b); err != nil {
		return Block{}, err
	}
	return b, nil
}

// Append checks b (see Check) and adds it at the head.
func (c *Chain) Append(b Block) error {
	if err := c.Check(b); err != nil {
		return err
	}
	if err := c.balances.Apply(b.Transfer); err != nil { // cannot fail after Check
		return &BlockError{Height: b.Height, Err: err}
	}
	c.blocks = append(c.blocks, b)
	c.ids[b.Transfer.ID] = b.Height
	return nil
}

// Verify re-checks the whole chain from genesis, independently of the
// state built up by Append, and reports the first bad height as a
// *BlockError. It also checks that the balance table equals the fold of
// the transfers.
func (c *Chain) Verify() error {
	fresh, err := NewChainFrom(c.blocks)
	if err != nil {
		return err
	}
	if len(fresh.balances) != len(c.balances) {
		return fmt.Errorf("ledger: balance table has %d members, chain has %d", len(c.balances), len(fresh.balances))
	}
	for id, v := range fresh.balances {
		if c.balances[id] != v {
			return fmt.Errorf("ledger: balance of %s is %d, chain says %d", id, c.balances[id], v)
		}
	}
	return nil
}
