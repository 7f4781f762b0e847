package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// FileOptions configures OpenFileStore.
type FileOptions struct {
	// NoSync skips fsync after each append. This is UNSAFE: after a crash of
	// the machine (not only the process), blocks that Append reported as
	// stored may be lost, and this replica may then disagree with its peers.
	// For benchmarks only.
	NoSync bool
	// Logger receives warnings, such as a torn last record being cut off.
	// Nil discards them.
	Logger *slog.Logger
}

// FileStore is a durable Store: an append-only log file of checksummed
// records, one block each. Append returns only after the record is written
// and fsynced (unless FileOptions.NoSync). A failed write or sync makes the
// store refuse every later Append, since the file's state is then unknown.
type FileStore struct {
	path   string
	noSync bool

	mu     sync.Mutex
	f      *os.File
	end    int64 // offset after the last good record
	blocks []Block
	buf    []byte
	err    error // sticky write error, or ErrClosed
}

// OpenFileStore opens or creates the log at path for the ledger that
// genesis names. A new file gets the genesis as its first record. An
// existing file is replayed and verified from genesis, seals included: an
// incomplete last record, or blocks at the end of the file that no seal
// covers (a write torn by a crash), are cut off with a warning; any other
// damage, such as a seal that does not verify, is a *CorruptError naming
// the file, the offset and the block height, and the store does not open. A file made for another genesis
// (other members or balances) is an error wrapping ErrGenesisMismatch. A
// file another FileStore has open, in this process or another, is an error
// wrapping ErrStoreInUse (on Unix; elsewhere it is not detected).
//
// A missing folder is created with mode 0700, and the file with mode 0600;
// an existing file readable by others is made 0600. On Unix the file is
// opened without following a symbolic link: a symlink at path, dangling or
// not, is refused with an error wrapping ErrSymlink.
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
	s := &FileStore{path: path, noSync: opts.NoSync, f: f}
	if err := s.load(genesis, log); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// load replays the file, or initialises it when it holds no genesis yet.
func (s *FileStore) load(genesis Block, log *slog.Logger) error {
	info, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	size := info.Size()
	head := make([]byte, min(size, int64(len(fileMagic))))
	if _, err := io.ReadFull(s.f, head); err != nil {
		return fmt.Errorf("ledger store %s: %w", s.path, err)
	}
	if !bytes.HasPrefix([]byte(fileMagic), head) {
		return &CorruptError{Path: s.path, Offset: 0, Err: errors.New("not a ledger store file (bad header)")}
	}
	if size < int64(len(fileMagic)) {
		if size > 0 {
			log.Warn("ledger store: incomplete file header, reinitialising", "path", s.path, "size", size)
		}
		return s.initialise(genesis)
	}
	rr := newRecordReader(s.f, int64(len(fileMagic)), size)
	var chain *Chain
	var blocks []Block // every block verified so far, genesis first
	var run []Block    // blocks read since the last seal
	var runOff []int64 // their offsets
	for {
		off := rr.off
		height := uint64(0)
		if chain != nil {
			height = uint64(chain.Len() + len(run))
		}
		payload, err := rr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			log.Warn("ledger store: cutting off torn last record", "path", s.path, "offset", off, "height", height, "bytes", size-off)
			if err := s.truncate(off); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return &CorruptError{Path: s.path, Offset: off, Height: height, Err: err}
		}
		b, err := decodeBlock(payload)
		if err != nil {
			return &CorruptError{Path: s.path, Offset: off, Height: height, Err: err}
		}
		if chain == nil {
			blocks = append(blocks, b)
			if chain, err = NewChain(b); err != nil {
				return &CorruptError{Path: s.path, Offset: 0, Height: 0, Err: err}
			}
			if b.Hash != genesis.Hash {
				return fmt.Errorf("ledger store %s: %w: file has genesis %s, expected %s",
					s.path, ErrGenesisMismatch, b.Hash.Short(), genesis.Hash.Short())
			}
			continue
		}
		run, runOff = append(run, b), append(runOff, off)
		if !b.Sealed() && b.Transfer.From == run[0].Transfer.From {
			continue // its seal comes later
		}
		if err := chain.Append(run...); err != nil {
			i := uint64(0) // the bad block's index in run
			if be := (*BlockError)(nil); errors.As(err, &be) && be.Height-uint64(chain.Len()) < uint64(len(run)) {
				i = be.Height - uint64(chain.Len())
			}
			return &CorruptError{Path: s.path, Offset: runOff[i], Height: uint64(chain.Len()) + i, Err: err}
		}
		blocks = append(blocks, run...)
		run, runOff = run[:0], runOff[:0]
	}
	if len(run) > 0 {
		// Appends write a batch with one write, its seal last: blocks
		// without their seal are the rest of a write that a crash tore.
		log.Warn("ledger store: cutting off the unsealed blocks at the end of the file", "path", s.path,
			"offset", runOff[0], "height", run[0].Height, "blocks", len(run), "bytes", rr.off-runOff[0])
		if err := s.truncate(runOff[0]); err != nil {
			return err
		}
		rr.off = runOff[0]
	}
	if chain == nil { // the genesis record itself was torn: it never counted
		return s.initialise(genesis)
	}
	s.end = rr.off
	s.blocks = blocks
	return nil
}

// truncate cuts the file at off and syncs it.
func (s *FileStore) truncate(off int64) error {
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
func (s *FileStore) initialise(genesis Block) error {
	enc, _ := genesis.MarshalBinary()
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
	s.blocks = []Block{genesis}
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

// Blocks implements Store.
func (s *FileStore) Blocks() ([]Block, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return nil, ErrClosed
	}
	return slices.Clone(s.blocks), nil
}

// Append implements Store: it writes the blocks' records with one write
// and, unless NoSync, fsyncs the file once before returning.
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
	head := s.blocks[len(s.blocks)-1]
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
	}
	s.buf = rec
	last := blocks[len(blocks)-1].Height
	if _, err := s.f.WriteAt(rec, s.end); err != nil {
		s.err = fmt.Errorf("ledger store %s: write blocks %d-%d: %w", s.path, blocks[0].Height, last, err)
		return s.err
	}
	if !s.noSync {
		if err := s.f.Sync(); err != nil {
			s.err = fmt.Errorf("ledger store %s: sync blocks %d-%d: %w", s.path, blocks[0].Height, last, err)
			return s.err
		}
	}
	s.end += int64(len(rec))
	s.blocks = append(s.blocks, blocks...)
	return nil
}

// Close implements Store.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(s.err, ErrClosed) {
		return ErrClosed
	}
	s.err = ErrClosed
	if err := s.f.Close(); err != nil {
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
