package ledger

import (
	"fmt"
	"slices"
	"sync"
)

// MaxReadBlocks bounds the span of one Store.Read.
const MaxReadBlocks = 4096

// MaxCheckpointSize bounds a checkpoint's Data.
const MaxCheckpointSize = 64 << 20

// Checkpoint is the state of a ledger at a height, in a form only the node
// interprets (see Store.SaveCheckpoint): the store keeps it so that a
// restart reads only the blocks after it.
type Checkpoint struct {
	Height uint64 // the height of the last block the checkpoint covers
	Data   []byte // opaque to the store
}

// Store persists one ledger's blocks (one genesis) as an append-only
// sequence, and one checkpoint. Implementations are safe for concurrent
// use; Append, Truncate and SaveCheckpoint are meant to be called by one
// writer, while Sync and Read may run beside them.
//
// Durability is split from writing: Append writes, Sync makes durable.
// What survives a crash of the process or a power loss is always a prefix
// of the blocks appended (never a block without the ones before it), and
// it holds at least every block appended before a Sync that returned nil.
type Store interface {
	// Genesis returns block 0.
	Genesis() Block
	// Load returns where a node starts from: the newest checkpoint (nil if
	// none) and every stored block after it in height order: those after
	// the checkpoint's height, or, without a checkpoint, every block
	// from the genesis on. Records are checked as far as the store can
	// without keys (framing, checksums, heights, Prev links); hashes and
	// seals are not: the node verifies them and calls Truncate to drop a
	// tail no seal covers. Every block it returns is durable: the node
	// answers for them without a Sync (a store that may hold blocks
	// written but not synced, as after a crash of the process, syncs them
	// first).
	Load() (*Checkpoint, []Block, error)
	// Append writes blocks after the last stored one; the first must
	// extend it and each the one before it (height and Prev). It does not
	// wait for the disk: the blocks are durable once a later Sync returns
	// nil. When it returns an error, none may be taken as stored, and no
	// later Load may return the last of them: at most a strict prefix
	// survives, which the node truncates, since a batch's seal is on its
	// last block. (A store that kept a whole batch the node was told had
	// failed would, after a restart, hold blocks its peers never got.)
	Append(blocks ...Block) error
	// Sync makes every block appended before it was called durable, and
	// returns. After a failed Sync the store refuses every later Append
	// and Sync, since what is on the disk is then unknown.
	Sync() error
	// Read returns the stored blocks at heights from..to inclusive, at
	// most MaxReadBlocks of them, whether or not they are durable yet.
	// Heights below the checkpoint's are readable too.
	Read(from, to uint64) ([]Block, error)
	// Truncate drops every block above height h and makes the blocks up
	// to h durable, before it returns: it is for a tail that a crash left
	// without its seal, or that was never synced. h must not be below the
	// checkpoint's height.
	Truncate(h uint64) error
	// SaveCheckpoint durably replaces the checkpoint with data for height
	// h, which must be durable already (at most the height of the last
	// Sync), so that the next Load returns the blocks after h only. A
	// checkpoint found damaged is ignored (and Load returns every block):
	// it saves time, and the node must be able to do without it.
	SaveCheckpoint(h uint64, data []byte) error
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// MemStore is a Store in memory, for tests and examples. It keeps every
// block, and forgets everything when the process ends: its Sync only
// records what SaveCheckpoint may cover.
type MemStore struct {
	genesis Block

	mu     sync.Mutex
	blocks []Block
	synced uint64 // height of the last block a Sync covered
	cp     *Checkpoint
	closed bool
}

// NewMemStore returns an in-memory store holding only genesis.
func NewMemStore(genesis Block) (*MemStore, error) {
	if _, err := NewChain(genesis); err != nil {
		return nil, err
	}
	return &MemStore{genesis: genesis, blocks: []Block{genesis}}, nil
}

// Genesis implements Store.
func (s *MemStore) Genesis() Block { return s.genesis }

// Load implements Store.
func (s *MemStore) Load() (*Checkpoint, []Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	if s.cp == nil {
		return nil, slices.Clone(s.blocks), nil
	}
	cp := &Checkpoint{Height: s.cp.Height, Data: slices.Clone(s.cp.Data)}
	return cp, slices.Clone(s.blocks[cp.Height+1:]), nil
}

// Append implements Store.
func (s *MemStore) Append(blocks ...Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	head := s.blocks[len(s.blocks)-1]
	for _, b := range blocks {
		if err := checkLink(head, b); err != nil {
			return err
		}
		head = b
	}
	s.blocks = appendDoubling(s.blocks, blocks)
	return nil
}

// Sync implements Store.
func (s *MemStore) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.synced = uint64(len(s.blocks) - 1)
	return nil
}

// Read implements Store.
func (s *MemStore) Read(from, to uint64) ([]Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := checkSpan(from, to, uint64(len(s.blocks)-1)); err != nil {
		return nil, err
	}
	return slices.Clone(s.blocks[from : to+1]), nil
}

// Truncate implements Store.
func (s *MemStore) Truncate(h uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := checkTruncate(h, uint64(len(s.blocks)-1), s.cp); err != nil {
		return err
	}
	clear(s.blocks[h+1:])
	s.blocks = s.blocks[:h+1]
	s.synced = h
	return nil
}

// SaveCheckpoint implements Store.
func (s *MemStore) SaveCheckpoint(h uint64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := checkCheckpoint(h, s.synced, data); err != nil {
		return err
	}
	s.cp = &Checkpoint{Height: h, Data: slices.Clone(data)}
	return nil
}

// appendDoubling appends add to blocks, doubling the capacity when it
// grows: a chain's history is copied about once in all, where append's
// smaller steps for large slices copy it several times.
func appendDoubling(blocks, add []Block) []Block {
	if cap(blocks)-len(blocks) < len(add) {
		blocks = slices.Grow(blocks, max(len(add), len(blocks)))
	}
	return append(blocks, add...)
}

// Close implements Store.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	return nil
}

// checkLink checks that b's height and Prev extend head.
func checkLink(head, b Block) error {
	if b.Height != head.Height+1 {
		return &BlockError{Height: head.Height + 1, Err: fmt.Errorf("%w: got %d", ErrBadHeight, b.Height)}
	}
	if b.Prev != head.Hash {
		return &BlockError{Height: b.Height, Err: ErrBadPrev}
	}
	return nil
}

// checkSpan checks a Read of from..to against a store whose head is at
// height head.
func checkSpan(from, to, head uint64) error {
	switch {
	case from > to:
		return fmt.Errorf("ledger store: read of heights %d-%d: empty span", from, to)
	case to > head:
		return fmt.Errorf("ledger store: read of heights %d-%d: the head is at %d", from, to, head)
	case to-from >= MaxReadBlocks:
		return fmt.Errorf("ledger store: read of heights %d-%d: more than %d blocks", from, to, MaxReadBlocks)
	}
	return nil
}

// checkTruncate checks a Truncate to h of a store whose head is at height
// head, with checkpoint cp.
func checkTruncate(h, head uint64, cp *Checkpoint) error {
	switch {
	case h > head:
		return fmt.Errorf("ledger store: truncate to height %d: the head is at %d", h, head)
	case cp != nil && h < cp.Height:
		return fmt.Errorf("ledger store: truncate to height %d: below the checkpoint at %d", h, cp.Height)
	}
	return nil
}

// checkCheckpoint checks a SaveCheckpoint at h with data, of a store whose
// blocks are durable up to height synced.
func checkCheckpoint(h, synced uint64, data []byte) error {
	switch {
	case h > synced:
		return fmt.Errorf("ledger store: checkpoint at height %d: blocks are durable only up to %d", h, synced)
	case len(data) > MaxCheckpointSize:
		return fmt.Errorf("ledger store: checkpoint of %d bytes, more than %d", len(data), MaxCheckpointSize)
	}
	return nil
}
