package ledger

import (
	"crypto/ed25519"
	"fmt"
	"math"
)

// Chain is a verified sequence of blocks starting at a genesis, with the
// balance table it implies. Append admits only sealed blocks that extend
// the head correctly, so a Chain is always valid, and every block in it is
// covered by a seal of its sender.
//
// A Chain's memory is bounded by its configuration, not by its history:
// it holds the genesis, the head, the balances, the most recent blocks (a
// window of 4096; Block reports older heights as missing) and every
// member's last IDWindow transfer IDs. A Chain is not safe for concurrent
// use; Node guards its own.
type Chain struct {
	genesis Block
	head    Block
	members []string          // the genesis accounts' ids, in order
	index   map[string]uint32 // member id -> index into members
	keys    keyring
	total   int64   // the sum of all balances, fixed by the genesis
	bal     []int64 // by member index
	ids     idWindows
	recent  blockRing
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
	c := &Chain{genesis: genesis, head: genesis, keys: genesisKeys(genesis),
		members: make([]string, len(genesis.Accounts)), index: make(map[string]uint32, len(genesis.Accounts)),
		bal: make([]int64, len(genesis.Accounts)), ids: newIDWindows(len(genesis.Accounts))}
	for i, a := range genesis.Accounts {
		c.members[i], c.index[a.ID], c.bal[i] = a.ID, uint32(i), b[a.ID]
		c.total += a.Balance // genesisBalances checked that it does not overflow
	}
	return c, nil
}

// Genesis returns block 0.
func (c *Chain) Genesis() Block { return c.genesis }

// Head returns the newest block.
func (c *Chain) Head() Block { return c.head }

// Len returns the number of blocks, genesis included.
func (c *Chain) Len() int { return int(c.head.Height) + 1 }

// Block returns the block at height h, if the chain holds it in memory:
// the genesis, the head, and the blocks of the recent window.
func (c *Chain) Block(h uint64) (Block, bool) {
	switch {
	case h == 0:
		return c.genesis, true
	case h == c.head.Height:
		return c.head, true
	}
	s, ok := c.recent.get(h)
	if !ok {
		return Block{}, false
	}
	return c.expand(h, s), true
}

// expand returns the block that s holds at height h.
func (c *Chain) expand(h uint64, s *slot) Block {
	b := Block{Height: h, Prev: s.prev, Clock: s.clock, Hash: s.hash,
		Transfer: Transfer{ID: s.id, From: c.members[s.from], To: c.members[s.to], Amount: s.amount}}
	if s.sealed {
		b.Sig = append([]byte(nil), s.sig[:]...)
	}
	return b
}

// slot returns b held compactly; b's parties must be members.
func (c *Chain) slot(b Block) slot {
	return slotOf(b, c.index[b.Transfer.From], c.index[b.Transfer.To])
}

// slotOf returns b held compactly, with from and to the member indexes of
// its parties.
func slotOf(b Block, from, to uint32) slot {
	s := slot{prev: b.Prev, hash: b.Hash, clock: b.Clock, id: b.Transfer.ID, amount: b.Transfer.Amount,
		from: from, to: to, sealed: b.Sealed()}
	copy(s.sig[:], b.Sig)
	return s
}

// Balances returns a copy of the balance table at the head.
func (c *Chain) Balances() Balances { return c.table(c.bal) }

// table returns bal, by member index, as a Balances.
func (c *Chain) table(bal []int64) Balances {
	b := make(Balances, len(bal))
	for i, v := range bal {
		b[c.members[i]] = v
	}
	return b
}

// Balance returns id's balance at the head, and whether id is a member.
func (c *Chain) Balance(id string) (int64, bool) {
	i, ok := c.index[id]
	if !ok {
		return 0, false
	}
	return c.bal[i], true
}

// TransferHeight returns the height of the block holding transfer id, if
// id is in its sender's window of the last IDWindow transfers.
func (c *Chain) TransferHeight(id TransferID) (uint64, bool) {
	e, ok := c.ids.lookup(id)
	return e.height, ok
}

// Next builds the block that would append t at the head under the mutex
// token clock; it checks t (members, amount, funds) but does not append.
// The block carries no seal: Seal it with the key of t.From, or follow it
// with a sealed block of t.From, before Append.
func (c *Chain) Next(t Transfer, clock uint64) (Block, error) {
	head := c.Head()
	b := Block{Height: head.Height + 1, Prev: head.Hash, Clock: clock, Transfer: t}
	b.Hash = b.ComputeHash()
	if _, _, err := c.checkNext(c.head, c.bal, c.seen, b, true); err != nil {
		return Block{}, err
	}
	return b, nil
}

// Check reports whether b would extend the chain: its height, Prev, Hash,
// Clock at most 1<<63 (lamportmutex.MaxClock), a transfer ID not in any
// member's window of its last IDWindow transfer IDs, and the transfer's
// validity and funds. It does not check seals; Append does. The error is
// a *BlockError.
//
// Clock is bounded but not ordered: a peer that restarts may be granted
// the mutex with a token clock below the head's.
func (c *Chain) Check(b Block) error {
	_, _, err := c.checkNext(c.head, c.bal, c.seen, b, false)
	return err
}

// seen reports the height of a transfer ID in the chain's windows.
func (c *Chain) seen(id TransferID) (uint64, bool) { return c.TransferHeight(id) }

// checkNext is Check against any head, balances (by member index) and
// transfer-ID lookup. It returns the indexes of the transfer's parties.
// With hashed set, the caller vouches that b.Hash is b.ComputeHash()
// (it computed it, or keyring.verifySeals checked it), and the hash is
// not computed again.
func (c *Chain) checkNext(head Block, bal []int64, seen func(TransferID) (uint64, bool), b Block, hashed bool) (from, to uint32, err error) {
	want := head.Height + 1
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
	case !hashed && b.ComputeHash() != b.Hash:
		err = ErrBadHash
	default:
		if h, dup := seen(b.Transfer.ID); dup {
			err = fmt.Errorf("%w: %s at height %d", ErrDuplicateTransfer, b.Transfer.ID, h)
		} else {
			from, to, err = c.checkFunds(bal, b.Transfer)
		}
	}
	if err != nil {
		return 0, 0, &BlockError{Height: want, Err: err}
	}
	return from, to, nil
}

// validate checks t without looking at funds: both parties are members,
// they differ, and the amount is positive. It returns their indexes.
func (c *Chain) validate(t Transfer) (from, to uint32, err error) {
	from, okFrom := c.index[t.From]
	to, okTo := c.index[t.To]
	switch {
	case !okFrom:
		return 0, 0, fmt.Errorf("%w: sender %q", ErrUnknownClient, t.From)
	case !okTo:
		return 0, 0, fmt.Errorf("%w: receiver %q", ErrUnknownClient, t.To)
	case t.From == t.To:
		return 0, 0, fmt.Errorf("%w: %q", ErrSelfTransfer, t.From)
	case t.Amount <= 0:
		return 0, 0, fmt.Errorf("%w: %d", ErrInvalidAmount, t.Amount)
	}
	return from, to, nil
}

// checkFunds is validate, and checks that the sender can pay t from bal
// and that the receiver's balance does not overflow: the rules of
// Balances.Check, by member index.
func (c *Chain) checkFunds(bal []int64, t Transfer) (from, to uint32, err error) {
	if from, to, err = c.validate(t); err != nil {
		return 0, 0, err
	}
	if have := bal[from]; have < t.Amount {
		return 0, 0, fmt.Errorf("%w: %s has %d, needs %d", ErrInsufficientFunds, t.From, have, t.Amount)
	}
	if bal[to] > math.MaxInt64-t.Amount {
		return 0, 0, fmt.Errorf("%w: balance of %s would overflow", ErrInvalidAmount, t.To)
	}
	return from, to, nil
}

// push adds b, checked against the head and covered by a seal, at the
// head: the balances, its sender's ID window, the recent window. from and
// to are the member indexes of its parties.
func (c *Chain) push(b Block, from, to uint32) {
	if b.Height != c.head.Height+1 {
		panic(fmt.Sprintf("ledger: block %d pushed onto head %d", b.Height, c.head.Height))
	}
	c.bal[from] -= b.Transfer.Amount
	c.bal[to] += b.Transfer.Amount
	c.ids.add(from, b.Transfer.ID, b.Height)
	c.recent.push(b.Height, slotOf(b, from, to))
	c.head = b
}

// draft extends a Chain in scratch space: blocks checked against the chain
// and against each other, not yet appended. A batch is drafted, persisted,
// and only then appended, so the chain never holds a block the store lacks.
//
// The draft tracks which of its blocks are covered by a seal, by the
// presence of Sig only: every sealed block given to add must have passed
// keyring.verifySeals (or been sealed by this node, see seal).
type draft struct {
	c      *Chain
	base   uint64 // the chain's head height when drafting began
	head   Block
	bal    []int64  // by member index
	seqs   []uint64 // by member index: the seq of its next transfer
	blocks []Block
	refs   []draftRef           // by index into blocks
	byID   map[TransferID]int32 // index into blocks of the newest block with an ID; nil up to draftScan blocks
	open   int                  // trailing blocks not yet covered by a seal
}

// draftRef is what a draft knows of one of its blocks beyond the block:
// its transfer ID, its parties' member indexes and its sender's seq.
type draftRef struct {
	id       TransferID
	seq      uint64
	from, to uint32
}

// draftScan is how many blocks a draft searches one by one for a transfer
// ID; a larger draft indexes them in a map.
const draftScan = 64

func (c *Chain) draft() *draft {
	return &draft{c: c, base: c.head.Height, head: c.head, bal: append([]int64(nil), c.bal...),
		seqs: append([]uint64(nil), c.ids.next...)}
}

// table returns the draft's balances.
func (d *draft) table() Balances { return d.c.table(d.bal) }

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

// seen reports the height of a transfer ID in the ID windows as the
// draft's blocks leave them: its own IDs, and the chain's that its
// senders' later transfers have not pushed out.
func (d *draft) seen(id TransferID) (uint64, bool) {
	if i, ok := d.find(id); ok {
		if r := d.refs[i]; r.seq+IDWindow >= d.seqs[r.from] {
			return d.base + 1 + uint64(i), true
		}
	}
	if e, ok := d.c.ids.lookup(id); ok && e.live(d.seqs[e.member]) {
		return e.height, true
	}
	return 0, false
}

// find returns the index of the draft's newest block with transfer ID id.
func (d *draft) find(id TransferID) (int, bool) {
	if d.byID != nil {
		i, ok := d.byID[id]
		return int(i), ok
	}
	for i := len(d.refs) - 1; i >= 0; i-- {
		if d.refs[i].id == id {
			return i, true
		}
	}
	return 0, false
}

// add checks b against the draft's head and applies it. An unsealed
// block after open blocks of another sender is refused (ErrUnsealed), and
// so is an unsealed block after MaxBatch open ones: every path by which
// blocks arrive carries at most MaxBatch blocks per seal.
func (d *draft) add(b Block) error { return d.check(b, false) }

// addVerified is add for a block that passed keyring.verifySeals, which
// checked its hash: the hash is not computed again.
func (d *draft) addVerified(b Block) error { return d.check(b, true) }

// check is add; hashed is as for checkNext.
func (d *draft) check(b Block, hashed bool) error {
	from, to, err := d.c.checkNext(d.head, d.bal, d.seen, b, hashed)
	switch {
	case err != nil:
		return err
	case d.open > 0 && b.Transfer.From != d.head.Transfer.From:
		return d.unsealed()
	case d.open >= MaxBatch && !b.Sealed():
		return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: more than %d blocks of %q without a seal",
			ErrUnsealed, MaxBatch, b.Transfer.From)}
	}
	if b.Sealed() {
		d.open = 0
	} else {
		d.open++
	}
	d.bal[from] -= b.Transfer.Amount
	d.bal[to] += b.Transfer.Amount
	i := len(d.blocks)
	switch {
	case d.byID != nil:
		d.byID[b.Transfer.ID] = int32(i)
	case i == draftScan:
		d.byID = make(map[TransferID]int32, 2*draftScan)
		for j, r := range d.refs {
			d.byID[r.id] = int32(j)
		}
		d.byID[b.Transfer.ID] = int32(i)
	}
	d.refs = append(d.refs, draftRef{id: b.Transfer.ID, seq: d.seqs[from], from: from, to: to})
	d.seqs[from]++
	d.head = b
	d.blocks = append(d.blocks, b)
	return nil
}

// next builds the block appending t at the draft's head, and adds it.
func (d *draft) next(t Transfer, clock uint64) (Block, error) {
	b := Block{Height: d.head.Height + 1, Prev: d.head.Hash, Clock: clock, Transfer: t}
	b.Hash = b.ComputeHash()
	if err := d.check(b, true); err != nil {
		return Block{}, err
	}
	return b, nil
}

// Append checks blocks, in order, and adds them at the head: each must
// pass Check against the one before it, and together they must be sealed
// (every block covered by a seal of its sender that verifies under the
// genesis key, at most MaxBatch blocks per seal; see Block). Either all
// are appended or, with an error (a *BlockError for the first bad
// height), none.
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
	if d.c != c || d.base != c.head.Height || k > d.sealed() {
		return fmt.Errorf("ledger: apply %d blocks of a draft of %d blocks (%d sealed) from head %d to a chain at head %d",
			k, len(d.blocks), d.sealed(), d.base, c.head.Height)
	}
	for i, b := range d.blocks[:k] {
		c.push(b, d.refs[i].from, d.refs[i].to)
	}
	d.c = nil
	return nil
}
