package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Read implements Store: it reads the records from the disk (the page
// cache, mostly), starting at the indexed record at or below from, and
// checks them as open does.
func (s *FileStore) Read(from, to uint64) ([]Block, error) {
	for {
		s.mu.Lock()
		if errors.Is(s.err, ErrClosed) {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		err := checkSpan(from, to, s.head.Height)
		epoch := s.epoch
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		var blocks []Block
		off, base, end, err := s.indexed(from)
		if err == nil {
			blocks, err = s.readRecords(off, end, base, from, to, nil)
		}
		s.mu.Lock()
		again, closed := s.epoch != epoch, errors.Is(s.err, ErrClosed)
		s.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if !again {
			return blocks, err
		}
		// A Truncate ran meanwhile: what was read may be gone.
	}
}

// indexed returns the offset and height of the indexed record at or below
// height h, which the store holds, and the log's end offset. It builds the
// index below idxLow first if h is there.
func (s *FileStore) indexed(h uint64) (off int64, base uint64, end int64, err error) {
	k := int(h / indexStride)
	s.mu.Lock()
	low := s.idxLow
	s.mu.Unlock()
	if k < low {
		if err := s.indexLow(); err != nil {
			return 0, 0, 0, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return 0, 0, 0, ErrClosed
	}
	if h > s.head.Height { // a Truncate ran
		return 0, 0, 0, fmt.Errorf("ledger store: block %d is beyond the head %d", h, s.head.Height)
	}
	return s.idx[k], uint64(k) * indexStride, s.end, nil
}

// indexLow builds the index below idxLow: it reads the record headers from
// the genesis to the first indexed record (below the checkpoint, which
// only SaveCheckpoint moves, and only up).
func (s *FileStore) indexLow() error {
	s.lowMu.Lock()
	defer s.lowMu.Unlock()
	s.mu.Lock()
	low := s.idxLow
	var stop int64
	if low < len(s.idx) {
		stop = s.idx[low]
	} else if s.cp != nil {
		stop = s.cp.next // the first record after it is not indexed: none is
	}
	s.mu.Unlock()
	if low == 0 {
		return nil
	}
	offs := make([]int64, 0, low)
	off := int64(len(fileMagic))
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, off, stop-off), 64<<10)
	var hdr [recordHeaderSize]byte
	for h := uint64(0); len(offs) < low; h++ {
		if h%indexStride == 0 {
			offs = append(offs, off)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return &CorruptError{Path: s.path, Offset: off, Height: h, Err: fmt.Errorf("index the log: %w", err)}
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if crc32.Checksum(hdr[:4], castagnoli) != binary.BigEndian.Uint32(hdr[4:]) || n > MaxBlockSize {
			return &CorruptError{Path: s.path, Offset: off, Height: h, Err: errors.New("index the log: bad record header")}
		}
		if _, err := r.Discard(int(n) + recordTrailer); err != nil {
			return &CorruptError{Path: s.path, Offset: off, Height: h, Err: fmt.Errorf("index the log: %w", err)}
		}
		off += int64(n) + recordOverhead
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	copy(s.idx, offs)
	s.idxLow = 0
	return nil
}

// scanTo reads the records from offset off, which holds the block at
// height base, to the one holding height h, and returns that record's
// offset, the offset after it, and its payload. end bounds the log.
func (s *FileStore) scanTo(off, end int64, base, h uint64) (start, next int64, payload []byte, err error) {
	rr := newRecordReader(io.NewSectionReader(s.f, off, end-off), off, end)
	for height := base; ; height++ {
		start = rr.off
		if payload, err = rr.next(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, nil, &CorruptError{Path: s.path, Offset: start, Height: height, Err: err}
		}
		if height == h {
			return start, rr.off, payload, nil
		}
	}
}

// readRecords reads the records from offset off, which holds the block at
// height base, and returns the blocks at heights from..to, checking their
// heights and links (the first's to prev, unless it is nil). end bounds
// the log.
func (s *FileStore) readRecords(off, end int64, base, from, to uint64, prev *Block) ([]Block, error) {
	rr := newRecordReader(io.NewSectionReader(s.f, off, end-off), off, end)
	rr.reuse = true
	blocks := make([]Block, 0, to-from+1)
	for height := base; height <= to; height++ {
		at := rr.off
		payload, err := rr.next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, &CorruptError{Path: s.path, Offset: at, Height: height, Err: err}
		}
		if height < from {
			continue
		}
		b, err := s.decodeAt(payload, at, height, prev)
		if err != nil {
			return nil, err
		}
		blocks = append(blocks, b)
		prev = &blocks[len(blocks)-1]
	}
	return blocks, nil
}
