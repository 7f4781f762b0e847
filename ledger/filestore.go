package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// FileOptions configures OpenFileStore.
type FileOptions struct {
	// NoSync makes Sync (and the other writes that would fsync) do
	// nothing. This is UNSAFE: after a crash of the machine (not only the
	// process), blocks that Sync reported durable may be lost, and this
	// replica may then disagree with its peers. For benchmarks only.
	NoSync bool
	// Logger receives warnings, such as a torn last record being cut off.
	// Nil discards them.
	Logger *slog.Logger
}

// FileStore is a durable Store: an append-only log file of checksummed
// records, one block each (see record.go), and a checkpoint file beside it
// (the log's path with ".checkpoint" added; see checkpointfile.go).
//
// Append writes the blocks' records with one write; Sync fsyncs the log.
// Since the log is only ever appended to (Truncate fsyncs its cut before
// anything is appended after it), what a crash leaves of it is a prefix of
// what was appended, with at most a torn record at its end, provided the
// file system does not keep a later write of the file while losing an
// earlier one (as ext4 in its default data=ordered mode, or a write that
// a crash of the process, not the machine, interrupts). A failed write
// wrote less than the whole batch, so its last record is torn or absent,
// as Store.Append requires. A failed write or sync makes the store refuse
// every later Append and Sync, since the file's state is then unknown.
//
// Memory does not grow with the blocks held, only with an index of the
// log: the offset of every 256th block's record (8 bytes per 256 blocks,
// 32 KB per million), which Read and SaveCheckpoint start from. After an
// open from a checkpoint, the index below it is built on the first Read
// below it, by a pass over the log's record headers.
type FileStore struct {
	path    string
	cpPath  string
	genesis Block
	noSync  bool
	log     *slog.Logger

	cpMu  sync.Mutex // serialises SaveCheckpoint and Truncate
	lowMu sync.Mutex // serialises building the index below idxLow

	mu     sync.Mutex
	f      *os.File
	end    int64 // offset after the last record
	head   Block // the last block
	synced uint64
	epoch  uint64  // counts Truncates, which invalidate reads begun before
	idx    []int64 // idx[k]: offset of the record at height k*indexStride; unknown below idxLow
	idxLow int
	cp     *fileCheckpoint
	buf    []byte
	err    error // sticky write error, or ErrClosed
}

// indexStride is how many heights apart the index's offsets are.
const indexStride = 256

// OpenFileStore opens or creates the log at path for the ledger that
// genesis names. A new file gets the genesis as its first record.
//
// An existing file is read from its checkpoint on, or whole if it has
// none (or a damaged one, with a warning): the records' framing and
// checksums, the genesis, and the last block, which Append extends. An
// incomplete last record (a write torn by a crash) is cut off with a
// warning; any other damage is a *CorruptError naming the file, the offset
// and the block height, and the store does not open. (Load and Read check
// the blocks they decode: heights and Prev links; hashes and seals are the
// node's part.) What was read is then fsynced, since a process that
// crashed may have left it written but not durable. A file made for
// another genesis (other members or balances) is an error wrapping
// ErrGenesisMismatch. A file
// another FileStore has open, in this process or another, is an error
// wrapping ErrStoreInUse (on Unix; elsewhere it is not detected).
//
// A missing folder is created with mode 0700, and the file with mode 0600;
// an existing file readable by others is made 0600. On Unix the file is
// opened without following a symbolic link: a symlink at path, dangling or
// not, is refused with an error wrapping ErrSymlink. The checkpoint file
// is written with mode 0600; a symlink at its path is not followed either
// (opening ignores it, SaveCheckpoint replaces the link itself).
func OpenFileStore(path string, genesis Block, opts FileOptions) (*FileStore, error) {
	if _, err := NewChain(genesis); err != nil {
		return nil, fmt.Errorf("ledger store %s: %w", path, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f, err := openStoreFile(path)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("ledger store %s: %w", path, err)
	}
	s := &FileStore{path: path, cpPath: path + checkpointSuffix, genesis: genesis, noSync: opts.NoSync, log: log, f: f}
	if err := s.open(); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// open reads the file from its checkpoint on, or initialises it when it
// holds no genesis yet.
func (s *FileStore) open() error {
	info, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	size := info.Size()
	magic := make([]byte, min(size, int64(len(fileMagic))))
	if _, err := s.f.ReadAt(magic, 0); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	if !bytes.HasPrefix([]byte(fileMagic), magic) {
		return &CorruptError{Path: s.path, Offset: 0, Err: errors.New("not a ledger store file (bad header)")}
	}
	if size < int64(len(fileMagic)) {
		if size > 0 {
			s.log.Warn("ledger store: incomplete file header, reinitialising", "path", s.path, "size", size)
		}
		return s.initialise()
	}
	s.cp = s.openCheckpoint(size)
	off, height := int64(len(fileMagic)), uint64(0)
	if s.cp != nil {
		off, height = s.cp.next, s.cp.height+1
		s.head = Block{Height: s.cp.height, Hash: s.cp.hash} // enough for Append's check
	}
	first := height
	s.idxLow = int((height + indexStride - 1) / indexStride)
	s.idx = make([]int64, s.idxLow)
	rr := newRecordReader(io.NewSectionReader(s.f, off, size-off), off, size)
	rr.reuse = true
	var last []byte // the last record's payload
	lastOff := off
	for ; ; height++ {
		at := rr.off
		payload, err := rr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			s.log.Warn("ledger store: cutting off torn last record", "path", s.path, "offset", at, "height", height, "bytes", size-at)
			if err := s.cut(at); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return &CorruptError{Path: s.path, Offset: at, Height: height, Err: err}
		}
		if height == 0 {
			if s.head, err = s.decodeAt(payload, at, 0, nil); err != nil {
				return err
			}
		}
		if height%indexStride == 0 {
			s.idx = append(s.idx, at)
		}
		last, lastOff = append(last[:0], payload...), at
	}
	switch {
	case height == 0: // the genesis record itself was torn: it never counted
		return s.initialise()
	case height > max(first, 1): // the head is a block after the genesis or checkpoint: decode it
		b, err := decodeBlock(last)
		if err == nil && b.Height != height-1 {
			err = fmt.Errorf("%w: the record of block %d holds block %d", ErrBadHeight, height-1, b.Height)
		}
		if err != nil {
			return &CorruptError{Path: s.path, Offset: lastOff, Height: height - 1, Err: err}
		}
		s.head = b
	}
	s.end = rr.off
	s.synced = s.head.Height
	if s.noSync {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	return nil
}

// decodeAt decodes the payload of the record at offset off, which should
// hold the block at height: at 0 the FileStore's genesis, else a block
// that extends prev (if it is not nil).
func (s *FileStore) decodeAt(payload []byte, off int64, height uint64, prev *Block) (Block, error) {
	if height == 0 {
		enc, _ := s.genesis.MarshalBinary()
		if bytes.Equal(payload, enc) {
			return s.genesis, nil
		}
		if b, err := decodeBlock(payload); err == nil && b.IsGenesis() && b.Hash != s.genesis.Hash {
			return Block{}, fmt.Errorf("ledger store %s: %w: file has genesis %s, expected %s",
				s.path, ErrGenesisMismatch, b.Hash.Short(), s.genesis.Hash.Short())
		}
		return Block{}, &CorruptError{Path: s.path, Offset: off, Height: 0, Err: errors.New("the first record is not the genesis")}
	}
	b, err := decodeBlock(payload)
	if err == nil && b.Height != height {
		err = fmt.Errorf("%w: the record of block %d holds block %d", ErrBadHeight, height, b.Height)
	}
	if err == nil && prev != nil {
		err = checkLink(*prev, b)
	}
	if err != nil {
		return Block{}, &CorruptError{Path: s.path, Offset: off, Height: height, Err: err}
	}
	return b, nil
}

// openCheckpoint returns the checkpoint file's content if it matches the
// log of size bytes, else nil, with a warning if there was a file.
func (s *FileStore) openCheckpoint(size int64) *fileCheckpoint {
	cp, err := readCheckpointFile(s.cpPath)
	if err == nil && cp != nil {
		err = s.matchCheckpoint(cp, size)
	}
	if err != nil {
		s.log.Warn("ledger store: ignoring the checkpoint file, reading the whole log", "path", s.cpPath, "err", err)
		return nil
	}
	return cp
}

// matchCheckpoint checks that cp is a checkpoint of this log, of size
// bytes: its ledger, and the block at the offsets it names.
func (s *FileStore) matchCheckpoint(cp *fileCheckpoint, size int64) error {
	if cp.genesis != s.genesis.Hash {
		return fmt.Errorf("%w: checkpoint of ledger %s", ErrGenesisMismatch, cp.genesis.Short())
	}
	if cp.next > size {
		return fmt.Errorf("checkpoint at offset %d, after the log's end %d", cp.next, size)
	}
	rr := newRecordReader(io.NewSectionReader(s.f, cp.start, cp.next-cp.start), cp.start, cp.next)
	payload, err := rr.next()
	if err != nil {
		return fmt.Errorf("checkpoint's record at offset %d: %w", cp.start, err)
	}
	if rr.off != cp.next {
		return fmt.Errorf("checkpoint's record at offset %d ends at %d, not %d", cp.start, rr.off, cp.next)
	}
	b, err := decodeBlock(payload)
	if err != nil {
		return fmt.Errorf("checkpoint's record at offset %d: %w", cp.start, err)
	}
	if b.Height != cp.height || b.Hash != cp.hash {
		return fmt.Errorf("checkpoint names block %d %s, the log has %d %s at offset %d",
			cp.height, cp.hash.Short(), b.Height, b.Hash.Short(), cp.start)
	}
	return nil
}

// cut truncates the file at off and syncs it.
func (s *FileStore) cut(off int64) error {
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("ledger store %s: truncate torn records: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	return nil
}

// initialise writes the file header and the genesis record to an empty or
// torn file and syncs the file and its directory.
func (s *FileStore) initialise() error {
	enc, _ := s.genesis.MarshalBinary()
	data := appendRecord([]byte(fileMagic), enc)
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	if _, err := s.f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	s.end = int64(len(data))
	s.head = s.genesis
	s.synced = 0
	s.cp = nil
	s.idx, s.idxLow = []int64{int64(len(fileMagic))}, 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Path returns the log file's path.
func (s *FileStore) Path() string { return s.path }

// Genesis implements Store.
func (s *FileStore) Genesis() Block { return s.genesis }

// Load implements Store: it reads the blocks after the checkpoint from the
// log again (as Read does); the store keeps none of them.
func (s *FileStore) Load() (*Checkpoint, []Block, error) {
	s.cpMu.Lock() // the checkpoint and the blocks after it, at one moment
	defer s.cpMu.Unlock()
	s.mu.Lock()
	if errors.Is(s.err, ErrClosed) {
		s.mu.Unlock()
		return nil, nil, ErrClosed
	}
	var cp *Checkpoint
	off, from := int64(len(fileMagic)), uint64(0)
	if s.cp != nil {
		cp = &Checkpoint{Height: s.cp.height, Data: bytes.Clone(s.cp.data)}
		off, from = s.cp.next, s.cp.height+1
	}
	var prev *Block
	if s.cp != nil {
		prev = &Block{Height: s.cp.height, Hash: s.cp.hash}
	}
	to, end := s.head.Height, s.end
	s.mu.Unlock()
	if from > to {
		return cp, nil, nil
	}
	blocks, err := s.readRecords(off, end, from, from, to, prev)
	if err != nil {
		return nil, nil, err
	}
	return cp, blocks, nil
}

// Append implements Store: it writes the blocks' records with one write.
func (s *FileStore) Append(blocks ...Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if len(blocks) == 0 {
		return nil
	}
	rec := s.buf[:0]
	head := s.head
	var idx []int64
	for _, b := range blocks {
		if err := checkLink(head, b); err != nil {
			return err
		}
		head = b
		at := len(rec)
		var err error
		if rec, err = appendBlockRecord(rec, b); err != nil {
			return err
		}
		if len(rec)-at-recordOverhead > MaxBlockSize {
			return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: %d bytes", ErrMalformedBlock, len(rec)-at-recordOverhead)}
		}
		if b.Height%indexStride == 0 {
			idx = append(idx, s.end+int64(at))
		}
	}
	s.buf = rec
	if cap(s.buf) > 1<<20 {
		s.buf = nil // a large batch's buffer is not kept
	}
	if _, err := s.f.WriteAt(rec, s.end); err != nil {
		s.err = fmt.Errorf("ledger store %s: write blocks %d-%d: %w", s.path, blocks[0].Height, head.Height, err)
		return s.err
	}
	s.end += int64(len(rec))
	s.head = head
	s.idx = append(s.idx, idx...)
	return nil
}

// Sync implements Store: one fsync of the log, which does not hold back
// Append or Read meanwhile.
func (s *FileStore) Sync() error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	h, epoch := s.head.Height, s.epoch
	done := h <= s.synced
	s.mu.Unlock()
	if done {
		return nil
	}
	if !s.noSync {
		if err := s.f.Sync(); err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.err == nil {
				s.err = fmt.Errorf("ledger store %s: sync blocks up to %d: %w", s.path, h, err)
			}
			return s.err
		}
	}
	s.mu.Lock()
	if s.epoch == epoch && h > s.synced {
		s.synced = h
	}
	s.mu.Unlock()
	return nil
}

// Truncate implements Store. It cuts the log and fsyncs it before it
// returns (unless NoSync), so that blocks appended later never share a
// crash's outcome with the ones it dropped.
func (s *FileStore) Truncate(h uint64) error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	if err := s.checkTruncate(h); err != nil {
		return err
	}
	// Only Truncate changes the records up to h, and cpMu keeps others out.
	_, next, b, err := s.recordOf(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if err := s.f.Truncate(next); err != nil {
		s.err = fmt.Errorf("ledger store %s: truncate to block %d: %w", s.path, h, err)
		return s.err
	}
	if !s.noSync {
		if err := s.f.Sync(); err != nil {
			s.err = fmt.Errorf("ledger store %s: sync the cut after block %d: %w", s.path, h, err)
			return s.err
		}
	}
	s.end, s.head, s.synced = next, b, h
	s.idx = s.idx[:h/indexStride+1]
	s.epoch++
	return nil
}

// checkTruncate checks a Truncate to h against the store's state.
func (s *FileStore) checkTruncate(h uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	var cp *Checkpoint
	if s.cp != nil {
		cp = &Checkpoint{Height: s.cp.height}
	}
	return checkTruncate(h, s.head.Height, cp)
}

// SaveCheckpoint implements Store: it writes the checkpoint file (see
// checkpointfile.go) with the log offset after h, so that the next open
// reads the log from there. Append and Sync go on meanwhile.
func (s *FileStore) SaveCheckpoint(h uint64, data []byte) error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		defer s.mu.Unlock()
		return s.err
	}
	if err := checkCheckpoint(h, s.synced, data); err != nil {
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	// Truncate waits for cpMu, so the records up to h stay as they are.
	start, next, b, err := s.recordOf(h)
	if err != nil {
		return err
	}
	cp := fileCheckpoint{genesis: s.genesis.Hash, height: h, start: start, next: next, hash: b.Hash, data: bytes.Clone(data)}
	if err := writeCheckpointFile(s.cpPath, cp, s.noSync); err != nil {
		return fmt.Errorf("ledger store %s: save checkpoint at block %d: %w", s.path, h, err)
	}
	s.mu.Lock()
	s.cp = &cp
	s.mu.Unlock()
	return nil
}

// Close implements Store. It fsyncs what was appended since the last Sync
// (unless NoSync).
func (s *FileStore) Close() error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return ErrClosed
	}
	var err error
	if s.err == nil && !s.noSync && s.synced < s.head.Height {
		err = s.f.Sync()
	}
	s.err = ErrClosed
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	return nil
}

// openStoreFile opens or creates the store file at path, and its folder,
// private to the user.
func openStoreFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("ledger store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|openNoFollow, 0o600)
	if err != nil {
		if isSymlinkError(err) {
			return nil, fmt.Errorf("ledger store %s: %w", path, ErrSymlink)
		}
		return nil, fmt.Errorf("ledger store: %w", err)
	}
	info, err := f.Stat()
	if err == nil && info.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(info.Mode().Perm() &^ 0o077)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("ledger store %s: %w", path, err)
	}
	return f, nil
}

// recordOf finds the record of block h: its offset, the offset after it,
// and the block.
func (s *FileStore) recordOf(h uint64) (start, next int64, b Block, err error) {
	off, base, end, err := s.indexed(h)
	if err != nil {
		return 0, 0, Block{}, err
	}
	start, next, payload, err := s.scanTo(off, end, base, h)
	if err != nil {
		return 0, 0, Block{}, err
	}
	b, err = decodeBlock(payload)
	if err != nil || b.Height != h {
		return 0, 0, Block{}, &CorruptError{Path: s.path, Offset: start, Height: h, Err: fmt.Errorf("record does not hold block %d: %v", h, err)}
	}
	return start, next, b, nil
}
