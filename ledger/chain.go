package ledger

import (
	"crypto/ed25519"
	"fmt"
	"slices"
)

// Chain is a verified sequence of blocks starting at a genesis, with the
// balance table it implies. Append admits only sealed blocks that extend
// the head correctly, so a Chain is always valid, and every block in it is
// covered by a seal of its sender. A Chain is not safe for concurrent use;
// Node guards its own.
type Chain struct {
	blocks   []Block
	balances Balances
	ids      map[TransferID]uint64 // transfer ID -> height
	keys     keyring
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
	return &Chain{blocks: []Block{genesis}, balances: b, ids: make(map[TransferID]uint64), keys: genesisKeys(genesis)}, nil
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
	if len(blocks) > 1 {
		if err := c.Append(blocks[1:]...); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// VerifyBlocks verifies blocks from genesis (hashes, links, seals,
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
// The block carries no seal: Seal it with the key of t.From, or follow it
// with a sealed block of t.From, before Append.
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
// Clock at most 1<<63 (lamportmutex.MaxClock), a transfer ID not yet in the chain, and the
// transfer's validity and funds. It does not check seals; Append does.
// The error is a *BlockError.
//
// Clock is bounded but not ordered: a peer that restarts may be granted
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
	case b.Clock > maxClock:
		err = fmt.Errorf("%w: %d exceeds %d", ErrBadClock, b.Clock, uint64(maxClock))
	case len(b.Sig) != 0 && len(b.Sig) != SigSize:
		err = fmt.Errorf("%w: seal of %d bytes", ErrMalformedBlock, len(b.Sig))
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
//
// The draft tracks which of its blocks are covered by a seal, by the
// presence of Sig only: every sealed block given to add must have passed
// keyring.verifySeals (or been sealed by this node, see seal).
type draft struct {
	c        *Chain
	base     uint64 // the chain's length when drafting began
	head     Block
	balances Balances
	ids      map[TransferID]uint64
	blocks   []Block
	open     int // trailing blocks not yet covered by a seal
}

func (c *Chain) draft() *draft {
	return &draft{c: c, base: uint64(len(c.blocks)), head: c.Head(), balances: c.balances.Clone(),
		ids: map[TransferID]uint64{}}
}

// sealed returns how many of the draft's blocks, from the first, are
// covered by a seal: the prefix that may be appended.
func (d *draft) sealed() int { return len(d.blocks) - d.open }

// unsealed reports the draft's trailing blocks that no seal covers, if
// there are any, as a *BlockError wrapping ErrUnsealed.
func (d *draft) unsealed() error {
	if d.open == 0 {
		return nil
	}
	first := d.blocks[d.sealed()]
	return &BlockError{Height: first.Height, Err: fmt.Errorf("%w: %d blocks of %q carry no seal",
		ErrUnsealed, d.open, first.Transfer.From)}
}

// seal seals the draft's head, the last block this node made, with key:
// it covers every open block, all of them this node's.
func (d *draft) seal(key ed25519.PrivateKey) Block {
	b := d.blocks[len(d.blocks)-1].Seal(key)
	d.blocks[len(d.blocks)-1], d.head, d.open = b, b, 0
	return b
}

// seen reports the height of a transfer ID in the chain or the draft.
func (d *draft) seen(id TransferID) (uint64, bool) {
	if h, ok := d.ids[id]; ok {
		return h, true
	}
	return d.c.TransferHeight(id)
}

// add checks b against the draft's head and applies it. An unsealed
// block after open blocks of another sender is refused (ErrUnsealed).
func (d *draft) add(b Block) error {
	if err := checkNext(d.head, d.balances, d.seen, b); err != nil {
		return err
	}
	if d.open > 0 && b.Transfer.From != d.head.Transfer.From {
		return d.unsealed()
	}
	if b.Sealed() {
		d.open = 0
	} else {
		d.open++
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

// Append checks blocks, in order, and adds them at the head: each must
// pass Check against the one before it, and together they must be sealed
// (every block covered by a seal of its sender that verifies under the
// genesis key; see Block). Either all are appended or, with an error (a
// *BlockError for the first bad height), none.
func (c *Chain) Append(blocks ...Block) error {
	d := c.draft()
	for _, b := range blocks {
		if err := d.add(b); err != nil {
			return err
		}
	}
	if err := c.keys.verifySeals(blocks); err != nil {
		return err
	}
	return c.apply(d, len(d.blocks))
}

// apply appends the first k blocks of d, a draft of c that c has not
// grown since: they were checked by d.add, and are covered by seals if k
// is at most d.sealed(). d is spent: it must not be used afterwards.
func (c *Chain) apply(d *draft, k int) error {
	if d.c != c || d.base != uint64(len(c.blocks)) || k > d.sealed() {
		return fmt.Errorf("ledger: apply %d blocks of a draft of %d blocks (%d sealed) from length %d to a chain of length %d",
			k, len(d.blocks), d.sealed(), d.base, len(c.blocks))
	}
	add := d.blocks[:k]
	bal := d.balances
	if k < len(d.blocks) {
		bal = c.balances.Clone()
		for _, b := range add {
			if err := bal.Apply(b.Transfer); err != nil { // cannot fail after d.add
				return &BlockError{Height: b.Height, Err: err}
			}
		}
	}
	c.balances, d.balances = bal, nil
	for _, b := range add {
		c.ids[b.Transfer.ID] = b.Height
	}
	c.blocks = appendDoubling(c.blocks, add)
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
