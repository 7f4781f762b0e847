package ledger

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A checkpoint is a Chain's state, so that a restart verifies only the
// blocks after it: the genesis hash, the head block, the balances and
// every member's transfer-ID window, signed by the node that wrote it.
// The node's own key signs it because it is the node's own file: the
// signature shows that the node wrote it and that it is unaltered, and
// lets the node trust the balances without re-reading the history. All
// integers are big-endian.
//
//	magic    [4]byte ("LLCP")
//	version  uint8   (1)
//	genesis  [32]byte (the genesis hash)
//	headLen  uint32, head [headLen]byte (the head's block encoding; the genesis hash if the head is the genesis)
//	members  uint32  (as many as the genesis has)
//	members × balance int64, in genesis order
//	members × (count uint32 (at most IDWindow), count × (id [16]byte, height uint64)), oldest first
//	sig      [64]byte (Ed25519, by the node's key, over everything before it)
const (
	checkpointMagic   = "LLCP"
	checkpointVersion = 1
	idEntrySize       = len(TransferID{}) + 8
)

// errBadCheckpoint: a checkpoint that does not decode, is not signed by
// the node's key, or does not describe a valid chain of its genesis.
var errBadCheckpoint = errors.New("bad checkpoint")

// appendState appends the checkpoint's body, all but its signature, to
// dst. Two chains of one genesis have the same state exactly when their
// bodies are equal.
func (c *Chain) appendState(dst []byte) []byte {
	dst = append(dst, checkpointMagic...)
	dst = append(dst, checkpointVersion)
	dst = append(dst, c.genesis.Hash[:]...)
	at := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	if c.head.Height == 0 {
		dst = append(dst, c.genesis.Hash[:]...) // the genesis as head: its hash stands for it
	} else {
		var err error
		if dst, err = c.head.AppendBinary(dst); err != nil {
			panic(fmt.Sprintf("ledger: the head of a chain does not encode: %v", err))
		}
	}
	binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(c.bal)))
	for _, v := range c.bal {
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	for m := range c.members {
		n := c.ids.next[m]
		dst = binary.BigEndian.AppendUint32(dst, uint32(min(n, IDWindow)))
		c.ids.window(uint32(m), func(id TransferID, height uint64) {
			dst = append(dst, id[:]...)
			dst = binary.BigEndian.AppendUint64(dst, height)
		})
	}
	return dst
}

// checkpoint returns the chain's checkpoint, signed with key.
func (c *Chain) checkpoint(key ed25519.PrivateKey) []byte {
	body := c.appendState(make([]byte, 0, c.checkpointSize()))
	return append(body, ed25519.Sign(key, body)...)
}

// checkpointSize returns the size of c's checkpoint, or more.
func (c *Chain) checkpointSize() int {
	n := len(checkpointMagic) + 1 + len(Hash{}) + 4 + headerSize + len(TransferID{}) + 2*(4+MaxIDLen) + 8 + len(Hash{}) + 1 + SigSize +
		4 + 8*len(c.bal) + SigSize
	for _, next := range c.ids.next {
		n += 4 + int(min(next, IDWindow))*idEntrySize
	}
	return n
}

// maxCheckpointSize returns the size of the largest checkpoint of a
// ledger of members members.
func maxCheckpointSize(members int) int {
	return len(checkpointMagic) + 1 + len(Hash{}) + 4 + MaxBlockSize + 4 +
		members*(8+4+IDWindow*idEntrySize) + SigSize
}

// chainFromCheckpoint decodes a checkpoint written by the key whose public
// half is pub into a chain of genesis, checking everything it can: the
// signature, the genesis hash, every count and bound, the head's hash and
// seal, that the balances are not negative and sum to the genesis total,
// and that the ID windows are ordered, unique, within the chain and hold
// the head's transfer. It never panics. Errors wrap errBadCheckpoint.
func chainFromCheckpoint(genesis Block, pub ed25519.PublicKey, data []byte) (*Chain, error) {
	c, err := NewChain(genesis)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: public key of %d bytes", errBadCheckpoint, len(pub))
	case len(data) > maxCheckpointSize(len(c.members)):
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errBadCheckpoint, len(data), maxCheckpointSize(len(c.members)))
	case len(data) < SigSize:
		return nil, fmt.Errorf("%w: %d bytes", errBadCheckpoint, len(data))
	}
	body, sig := data[:len(data)-SigSize], data[len(data)-SigSize:]
	if !ed25519.Verify(pub, body, sig) {
		return nil, fmt.Errorf("%w: the signature does not verify under the node's key", errBadCheckpoint)
	}
	d := decoder{buf: body}
	if err := c.decodeCheckpoint(&d); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadCheckpoint, err)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", errBadCheckpoint, d.err)
	}
	if d.off != len(body) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadCheckpoint, len(body)-d.off)
	}
	return c, nil
}

// decodeCheckpoint reads a checkpoint's body into c, a chain holding only
// its genesis. Structural errors are left in d.
func (c *Chain) decodeCheckpoint(d *decoder) error {
	var magic [len(checkpointMagic)]byte
	var g Hash
	d.bytes(magic[:])
	version := d.byte()
	d.bytes(g[:])
	switch {
	case d.err != nil:
		return nil
	case string(magic[:]) != checkpointMagic || version != checkpointVersion:
		return fmt.Errorf("not a checkpoint (magic %q, version %d)", magic[:], version)
	case g != c.genesis.Hash:
		return fmt.Errorf("%w: checkpoint of genesis %s, expected %s", ErrGenesisMismatch, g.Short(), c.genesis.Hash.Short())
	}
	head, err := c.decodeHead(d)
	if err != nil || d.err != nil {
		return err
	}
	if n := d.uint32(); d.err == nil && uint64(n) != uint64(len(c.members)) {
		return fmt.Errorf("%d members, the genesis has %d", n, len(c.members))
	}
	bal := make([]int64, len(c.members))
	var sum int64
	for i := range bal {
		bal[i] = int64(d.uint64())
		if bal[i] < 0 || sum > math.MaxInt64-bal[i] {
			return fmt.Errorf("balance %d of %q is negative or overflows the total", bal[i], c.members[i])
		}
		sum += bal[i]
	}
	if d.err == nil && sum != c.total {
		return fmt.Errorf("balances sum to %d, the genesis to %d", sum, c.total)
	}
	if head.Height == 0 && d.err == nil {
		for i, v := range bal {
			if v != c.bal[i] {
				return fmt.Errorf("balance %d of %q at the genesis, which gives %d", v, c.members[i], c.bal[i])
			}
		}
	}
	copy(c.bal, bal)
	if err := c.decodeWindows(d, head); err != nil || d.err != nil {
		return err
	}
	if head.Height > 0 {
		c.recent.push(head.Height, c.slot(head))
		c.head = head
	}
	return nil
}

// decodeHead reads and checks the checkpoint's head block: the genesis, by
// its hash, or a transfer block whose hash and seal verify.
func (c *Chain) decodeHead(d *decoder) (Block, error) {
	n := d.uint32()
	if d.err == nil && n > MaxBlockSize {
		return Block{}, fmt.Errorf("head of %d bytes", n)
	}
	raw := d.take(int(n))
	if d.err != nil {
		return Block{}, nil
	}
	if len(raw) == len(Hash{}) {
		if Hash(raw) != c.genesis.Hash {
			return Block{}, fmt.Errorf("head %x is neither a block nor the genesis", raw)
		}
		return c.genesis, nil
	}
	head, err := decodeBlock(raw)
	switch {
	case err != nil:
		return Block{}, fmt.Errorf("head: %w", err)
	case head.IsGenesis():
		return Block{}, fmt.Errorf("a genesis block as head")
	case head.Clock > maxClock:
		return Block{}, fmt.Errorf("head: %w: %d", ErrBadClock, head.Clock)
	case head.ComputeHash() != head.Hash:
		return Block{}, fmt.Errorf("head: %w", ErrBadHash)
	case !head.Sealed():
		return Block{}, fmt.Errorf("head: %w", ErrUnsealed)
	}
	if _, _, err := c.validate(head.Transfer); err != nil {
		return Block{}, fmt.Errorf("head: %w", err)
	}
	if err := c.keys.verifySeal(head); err != nil {
		return Block{}, fmt.Errorf("head: %w", err)
	}
	return head, nil
}

// decodeWindows reads every member's ID window into c.ids: each at most
// IDWindow entries at increasing heights up to the head's, no ID or
// height twice, and the head's transfer the newest of its sender's.
func (c *Chain) decodeWindows(d *decoder, head Block) error {
	heights := make(map[uint64]bool)
	for m := range c.members {
		n := d.uint32()
		switch {
		case d.err != nil:
			return nil
		case n > IDWindow:
			return fmt.Errorf("%d transfer ids for %q, more than %d", n, c.members[m], IDWindow)
		case uint64(n) > uint64(len(d.buf)-d.off)/uint64(idEntrySize):
			return fmt.Errorf("%d transfer ids do not fit in %d bytes", n, len(d.buf)-d.off)
		}
		var last uint64
		for range n {
			var id TransferID
			d.bytes(id[:])
			h := d.uint64()
			switch {
			case d.err != nil:
				return nil
			case h <= last || h > head.Height:
				return fmt.Errorf("transfer id %s of %q at height %d, after %d, in a chain of %d", id, c.members[m], h, last, head.Height)
			case heights[h]:
				return fmt.Errorf("two transfer ids at height %d", h)
			}
			if _, dup := c.ids.lookup(id); dup {
				return fmt.Errorf("%w: transfer id %s twice", ErrDuplicateTransfer, id)
			}
			heights[h], last = true, h
			c.ids.add(uint32(m), id, h)
		}
	}
	if head.Height == 0 {
		if len(heights) > 0 {
			return fmt.Errorf("transfer ids in a chain of the genesis alone")
		}
		return nil
	}
	if e, ok := c.ids.lookup(head.Transfer.ID); !ok || e.height != head.Height || c.members[e.member] != head.Transfer.From {
		return fmt.Errorf("the head's transfer %s is not the newest of its sender's ids", head.Transfer.ID)
	}
	return nil
}
