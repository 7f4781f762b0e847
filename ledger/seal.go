package ledger

import (
	"crypto/ed25519"
	"fmt"
)

// maxClock bounds a block's Clock: a block whose Clock exceeds it is
// invalid (ErrBadClock). It equals lamportmutex.MaxClock, the bound on
// every clock the mutex accepts from the wire.
const maxClock = 1 << 63

// keyring maps every member to the public key its seals verify under. It
// is built from the genesis and never changes.
type keyring map[string]ed25519.PublicKey

// genesisKeys returns the keyring of a checked genesis.
func genesisKeys(g Block) keyring {
	k := make(keyring, len(g.Accounts))
	for _, a := range g.Accounts {
		k[a.ID] = a.PublicKey
	}
	return k
}

// verifySeals is the signature check of the ledger: every path by which
// blocks enter a replica (a release payload, a catch-up batch, the node's
// own file, Chain.Append) passes them through it before they are checked
// against the chain.
//
// blocks must be consecutive in chain order and form a sealed unit: each
// block's hash matches its contents and each links to the one before it
// (height and Prev); every seal verifies under the key of its block's
// Transfer.From; and every block is covered by a seal, that is, followed
// (at or after it, before any block of another Transfer.From) by a sealed
// block. Since a seal signs a hash that binds Prev, it vouches for every
// block of its run. Each seal costs one signature verification; unsealed
// blocks cost a hash each.
//
// It does not check the blocks against a chain (links to the head,
// funds, transfer IDs); the draft does that. The error is a *BlockError.
func (k keyring) verifySeals(blocks []Block) error {
	open := 0 // blocks since the last seal
	for i, b := range blocks {
		var err error
		switch {
		case b.IsGenesis():
			err = fmt.Errorf("%w: a genesis among transfer blocks", ErrMalformedBlock)
		case i > 0 && b.Height != blocks[i-1].Height+1:
			err = fmt.Errorf("%w: %d follows %d", ErrBadHeight, b.Height, blocks[i-1].Height)
		case i > 0 && b.Prev != blocks[i-1].Hash:
			err = fmt.Errorf("%w: got %s, want %s", ErrBadPrev, b.Prev.Short(), blocks[i-1].Hash.Short())
		case b.ComputeHash() != b.Hash:
			err = ErrBadHash
		case open > 0 && b.Transfer.From != blocks[i-1].Transfer.From:
			first := blocks[i-open]
			return &BlockError{Height: first.Height, Err: fmt.Errorf("%w: %d blocks of %q end at a block of %q",
				ErrUnsealed, open, first.Transfer.From, b.Transfer.From)}
		case b.Sealed():
			err = k.verifySeal(b)
		}
		if err != nil {
			return &BlockError{Height: b.Height, Err: err}
		}
		if b.Sealed() {
			open = 0
		} else {
			open++
		}
	}
	if open > 0 {
		first := blocks[len(blocks)-open]
		return &BlockError{Height: first.Height, Err: fmt.Errorf("%w: the last %d blocks, of %q, carry no seal",
			ErrUnsealed, open, first.Transfer.From)}
	}
	return nil
}

// checkRelease checks the shape of a release payload from peer from
// before its seals are verified: one run of blocks that all spend from
// from, with one seal, on the last block. So a release costs its receiver
// one signature verification.
func checkRelease(from string, blocks []Block) error {
	for i, b := range blocks {
		switch {
		case b.Transfer.From != from:
			return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: released by %s, spends from %q",
				ErrNotOwner, from, b.Transfer.From)}
		case b.Sealed() && i < len(blocks)-1:
			return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: a seal before the end of a release",
				ErrMalformedBlock)}
		}
	}
	return nil
}

// verifySeal checks b's seal (b.Sig, over b.Hash) under the key of
// b.Transfer.From.
func (k keyring) verifySeal(b Block) error {
	key, ok := k[b.Transfer.From]
	switch {
	case !ok:
		return fmt.Errorf("%w: sender %q", ErrUnknownClient, b.Transfer.From)
	case len(b.Sig) != SigSize:
		return fmt.Errorf("%w: seal of %d bytes", ErrMalformedBlock, len(b.Sig))
	case !ed25519.Verify(key, b.Hash[:], b.Sig):
		return fmt.Errorf("%w: block %s of %q", ErrBadSignature, b.Hash.Short(), b.Transfer.From)
	}
	return nil
}

// sealCut returns how many of blocks (consecutive, every run sealed) to
// send in one catch-up batch of at most max blocks, cut after a seal so
// that the receiver can verify it alone: the longest such prefix, or, when
// the first run alone is longer than max, that run. It returns 0 if no
// block is sealed.
func sealCut(blocks []Block, max int) int {
	for i := min(max, len(blocks)); i > 0; i-- {
		if blocks[i-1].Sealed() {
			return i
		}
	}
	for i := max; i < len(blocks); i++ {
		if blocks[i].Sealed() {
			return i + 1
		}
	}
	return 0
}
