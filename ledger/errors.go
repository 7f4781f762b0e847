package ledger

import (
	"errors"
	"fmt"
)

// Errors about a transfer's input. Transfer returns them before it takes the
// mutex: nothing is written and no lock is held.
var (
	// ErrUnknownClient: a client id is not a member of the ledger.
	ErrUnknownClient = errors.New("unknown client")
	// ErrInvalidAmount: an amount is zero, negative, or does not fit in an int64.
	ErrInvalidAmount = errors.New("invalid amount: must be a positive whole number that fits in 63 bits")
	// ErrSelfTransfer: the sender and the receiver are the same client.
	ErrSelfTransfer = errors.New("cannot transfer to oneself")
	// ErrNotOwner: a node tried to spend another client's balance; a node
	// sends only from its own id. A received block whose sender is not the
	// peer that released it fails with this error too.
	ErrNotOwner = errors.New("cannot spend another client's balance")
	// ErrInsufficientFunds: the sender's balance is smaller than the amount.
	// The error returned wraps it and states the balance.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrTransferIDConflict: a transfer ID was already used for a transfer
	// with other parties or another amount.
	ErrTransferIDConflict = errors.New("transfer id already used for a different transfer")
)

// Errors about the state of a Node.
var (
	// ErrDiverged: the node stopped taking transfers: its own storage
	// failed, or two blocks at one height, sealed by one member, prove that
	// the chains forked (a *ConflictError).
	ErrDiverged = errors.New("ledger node stopped")
	// ErrPeerRefused is matched (errors.Is) by every *PeerError: a peer
	// sent bad input, which was refused, and that incarnation of the peer
	// is quarantined.
	ErrPeerRefused = errors.New("peer input refused")
	// ErrBadKey: Config.Signer is missing, malformed, or not the private
	// key of the public key that Config.Keys gives the node's own id.
	ErrBadKey = errors.New("signing key does not match the member's public key")
	// ErrClosed: the Node or Store is closed.
	ErrClosed = errors.New("ledger closed")
)

// Errors about blocks, chains and stores.
var (
	// ErrInvalidBlock is matched (errors.Is) by every *BlockError.
	ErrInvalidBlock = errors.New("invalid block")
	// ErrBadHeight: a block's height is not its predecessor's plus one.
	ErrBadHeight = errors.New("wrong height")
	// ErrBadPrev: a block's Prev is not its predecessor's hash.
	ErrBadPrev = errors.New("previous hash does not match")
	// ErrBadHash: a block's Hash is not the hash of its contents.
	ErrBadHash = errors.New("hash does not match contents")
	// ErrBadGenesis: a genesis block is malformed (no members, duplicate or
	// unsorted members, negative balances, total overflow, ...).
	ErrBadGenesis = errors.New("bad genesis")
	// ErrBadSignature: a block's seal does not verify under the public key
	// that the genesis gives its Transfer.From.
	ErrBadSignature = errors.New("seal does not verify under the sender's key")
	// ErrUnsealed: a block is not covered by a seal of its sender (see
	// Block.Sig): the batch ends, or another member's block follows, before
	// a sealed block of the same sender.
	ErrUnsealed = errors.New("block not covered by a seal of its sender")
	// ErrBadClock: a block's Clock exceeds 1<<63 (lamportmutex.MaxClock).
	ErrBadClock = errors.New("block clock out of range")
	// ErrDuplicateTransfer: a block's transfer ID is among the last
	// IDWindow transfer IDs of a member (see IDWindow).
	ErrDuplicateTransfer = errors.New("transfer id already in the chain")
	// ErrMalformedBlock: bytes that do not decode as a block.
	ErrMalformedBlock = errors.New("malformed block encoding")
	// ErrGenesisMismatch: a store or chain belongs to another ledger (other
	// members or initial balances).
	ErrGenesisMismatch = errors.New("genesis does not match: this is another ledger")
	// ErrStoreInUse: another process (or another FileStore in this one)
	// has the ledger file open. On Unix an exclusive flock(2) guards the
	// file; the kernel drops it when the holder exits, even by a crash.
	ErrStoreInUse = errors.New("ledger file is in use by another process")
	// ErrSymlink: the store's path is a symbolic link, which is not
	// followed (on Unix).
	ErrSymlink = errors.New("ledger file path is a symbolic link; refusing to follow it")
	// ErrCorrupt is matched (errors.Is) by every *CorruptError.
	ErrCorrupt = errors.New("ledger store corrupt")
)

// BlockError reports the first block of a chain that fails verification.
type BlockError struct {
	Height uint64 // the height at which the block was expected
	Err    error  // why, e.g. ErrBadHash or ErrInsufficientFunds
}

// Error describes the bad block and why.
func (e *BlockError) Error() string {
	return fmt.Sprintf("invalid block at height %d: %v", e.Height, e.Err)
}

// Unwrap returns the cause.
func (e *BlockError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidBlock.
func (e *BlockError) Is(target error) bool { return target == ErrInvalidBlock }

// CorruptError reports damage in a store file that is not a torn last
// record: the store refuses to open, or to read the damaged record.
type CorruptError struct {
	Path   string // the file
	Offset int64  // byte offset of the damaged record
	Height uint64 // height of the block the record should hold
	Err    error  // what is wrong
}

// Error names the file, offset and height of the damage.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("ledger store %s: damaged record at offset %d (block %d): %v",
		e.Path, e.Offset, e.Height, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// PeerError reports bad input from a peer: refused, and that incarnation
// of the peer quarantined. The node keeps running.
type PeerError struct {
	Peer string // the peer that sent it
	What string // what it was: "release", "catch-up blocks", "head", ...
	Err  error  // why it was refused, e.g. a *BlockError
}

// Error names the peer, the input and the cause.
func (e *PeerError) Error() string {
	return fmt.Sprintf("refused %s from peer %s: %v", e.What, e.Peer, e.Err)
}

// Unwrap returns the cause.
func (e *PeerError) Unwrap() error { return e.Err }

// Is reports whether target is ErrPeerRefused.
func (e *PeerError) Is(target error) bool { return target == ErrPeerRefused }

// ConflictError reports two validly sealed blocks at one height, this
// node's own and one a peer sent. Nothing is overwritten. Sealed by one
// member on the same predecessor, they prove that member equivocated and
// the chains forked: the node stops (ErrDiverged). Sealed by two members,
// they prove nothing about either (blocks are not bound to mutex grants):
// the peer's block is refused and reported with EventDisagreement. Their
// Transfer.From fields name the members that made (and sealed) them.
type ConflictError struct {
	Height uint64 // the height at which the chains disagree
	Ours   Block  // this node's block there
	Theirs Block  // the block the peer sent for that height
	Peer   string // the peer that sent it
}

// Error names the height, both blocks and their makers.
func (e *ConflictError) Error() string {
	after := "both after " + e.Ours.Prev.Short()
	if e.Theirs.Prev != e.Ours.Prev {
		after = fmt.Sprintf("after %s and %s", e.Ours.Prev.Short(), e.Theirs.Prev.Short())
	}
	return fmt.Sprintf("chains disagree at height %d: this node has block %s by %s, peer %s sent block %s by %s, %s",
		e.Height, e.Ours.Hash.Short(), e.Ours.Transfer.From, e.Peer, e.Theirs.Hash.Short(), quote(e.Theirs.Transfer.From), after)
}

// Is reports whether target is ErrInvalidBlock.
func (e *ConflictError) Is(target error) bool { return target == ErrInvalidBlock }
