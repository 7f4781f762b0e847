package ledger

import (
	"fmt"
	"slices"
	"sync"
)

// Store persists a ledger's blocks. Implementations hold exactly one
// ledger (one genesis), admit only blocks that extend their head, and are
// safe for concurrent use.
type Store interface {
	// Blocks returns the stored blocks, genesis first: those recovered and
	// verified when the store was opened, then those appended since.
	Blocks() ([]Block, error)
	// Append stores blocks, in order; the first must extend the stored
	// head and each the one before it (height and Prev). When Append
	// returns nil, all of them are durable to the degree the store promises
	// (the file store: written and fsynced once for the lot, unless
	// NoSync); when it returns an error, none may be taken as stored.
	Append(blocks ...Block) error
	// Sync makes every block appended before it durable.
	Sync() error
	// Close releases the store. Later calls return ErrClosed.
	Close() error
}

// MemStore is a Store in memory, for tests and examples. It forgets
// everything when the process ends.
type MemStore struct {
	mu     sync.Mutex
	blocks []Block
	closed bool
}

// NewMemStore returns an in-memory store holding only genesis.
func NewMemStore(genesis Block) (*MemStore, error) {
	if _, err := NewChain(genesis); err != nil {
		return nil, err
	}
	return &MemStore{blocks: []Block{genesis}}, nil
}

// Blocks implements Store.
func (s *MemStore) Blocks() ([]Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return slices.Clone(s.blocks), nil
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

// appendDoubling appends add to blocks, doubling the capacity when it
// grows: a chain's history is copied about once in all, where append's
// smaller steps for large slices copy it several times.
func appendDoubling(blocks, add []Block) []Block {
	if cap(blocks)-len(blocks) < len(add) {
		blocks = slices.Grow(blocks, max(len(add), len(blocks)))
	}
	return append(blocks, add...)
}

// Sync implements Store: a MemStore has nothing to sync.
func (s *MemStore) Sync() error { return nil }

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
