package ledger_test

import (
	"fmt"
	"sync"

	"github.com/lamportledger/lamportledger/ledger"
)

// lossyStore is a Store in memory that a simulated power cut sets back to
// what a disk would hold: powerCut drops every block appended since the
// last Sync began. A checkpoint is durable when SaveCheckpoint returns, as
// the FileStore's is, so a power cut keeps it (SaveCheckpoint admits only
// synced heights, so the blocks it covers stay too).
//
// Its disk outlives it: Close closes only this handle, and restart
// returns a new handle on what survives a power cut, for a new node.
type lossyStore struct {
	d *lossyDisk

	mu     sync.Mutex
	closed bool
}

// lossyDisk is what a lossyStore's handles share.
type lossyDisk struct {
	mu     sync.Mutex
	ms     *ledger.MemStore
	head   uint64 // height of the last block appended
	synced uint64 // height of the last block a Sync covered
}

func newLossyStore(g ledger.Block) *lossyStore {
	ms, err := ledger.NewMemStore(g)
	if err != nil {
		panic(err)
	}
	return &lossyStore{d: &lossyDisk{ms: ms}}
}

// open returns the disk, or ErrClosed once this handle is closed.
func (s *lossyStore) open() (*lossyDisk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ledger.ErrClosed
	}
	return s.d, nil
}

// Genesis implements ledger.Store.
func (s *lossyStore) Genesis() ledger.Block { return s.d.ms.Genesis() }

// Load implements ledger.Store.
func (s *lossyStore) Load() (*ledger.Checkpoint, []ledger.Block, error) {
	d, err := s.open()
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ms.Load()
}

// Append implements ledger.Store.
func (s *lossyStore) Append(blocks ...ledger.Block) error {
	d, err := s.open()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ms.Append(blocks...); err != nil {
		return err
	}
	if len(blocks) > 0 {
		d.head = blocks[len(blocks)-1].Height
	}
	return nil
}

// Sync implements ledger.Store: what was appended before it is durable.
func (s *lossyStore) Sync() error {
	d, err := s.open()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ms.Sync(); err != nil {
		return err
	}
	d.synced = d.head
	return nil
}

// Read implements ledger.Store.
func (s *lossyStore) Read(from, to uint64) ([]ledger.Block, error) {
	d, err := s.open()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ms.Read(from, to)
}

// Truncate implements ledger.Store; the cut is durable at once.
func (s *lossyStore) Truncate(h uint64) error {
	d, err := s.open()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ms.Truncate(h); err != nil {
		return err
	}
	d.head, d.synced = h, h
	return nil
}

// SaveCheckpoint implements ledger.Store.
func (s *lossyStore) SaveCheckpoint(h uint64, data []byte) error {
	d, err := s.open()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ms.SaveCheckpoint(h, data)
}

// Close implements ledger.Store: it closes this handle, not the disk.
func (s *lossyStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ledger.ErrClosed
	}
	s.closed = true
	return nil
}

// powerCut drops the blocks no Sync covered, and returns how many.
func (s *lossyStore) powerCut() int {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	lost := int(d.head - d.synced)
	if err := d.ms.Truncate(d.synced); err != nil {
		panic(fmt.Sprintf("lossyStore: a power cut cannot drop the unsynced tail: %v", err))
	}
	d.head = d.synced
	return lost
}

// restart closes this handle (if it is open), cuts the power, and returns
// a new handle on the disk.
func (s *lossyStore) restart() *lossyStore {
	_ = s.Close()
	s.powerCut()
	return &lossyStore{d: s.d}
}

// durableHas reports whether b is among the blocks a power cut now would
// keep.
func (s *lossyStore) durableHas(b ledger.Block) bool {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.Height > d.synced {
		return false
	}
	got, err := d.ms.Read(b.Height, b.Height)
	return err == nil && len(got) == 1 && got[0].Hash == b.Hash
}
