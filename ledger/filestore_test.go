package ledger_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// fixture writes a log of n transfer blocks and returns its bytes and the
// offset of every record (genesis first) plus the end.
func fixture(t testing.TB, n int) (path string, g ledger.Block, data []byte, offs []int64, blocks []ledger.Block) {
	t.Helper()
	c := buildChain(t, n)
	blocks = ledger.ChainBlocks(c)
	g = blocks[0]
	path = filepath.Join(t.TempDir(), "ledger.log")
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	offs = append(offs, 8)
	for _, b := range blocks[1:] {
		offs = append(offs, fileSize(t, path))
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	offs = append(offs, fileSize(t, path))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, g, data, offs, blocks
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// loadAll returns what Load returns of a store without a checkpoint.
func loadAll(t testing.TB, s ledger.Store) ([]ledger.Block, error) {
	t.Helper()
	cp, blocks, err := s.Load()
	if cp != nil {
		t.Fatalf("a checkpoint at height %d", cp.Height)
	}
	return blocks, err
}

func hasHeight(err error, h uint64) bool {
	var ce *ledger.CorruptError
	return errors.As(err, &ce) && ce.Height == h && errors.Is(err, ledger.ErrCorrupt)
}

func TestFileStoreReopen(t *testing.T) {
	path, g, _, _, blocks := fixture(t, 5)
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadAll(t, s)
	if err != nil || len(got) != len(blocks) || got[len(got)-1].Hash != blocks[len(blocks)-1].Hash {
		t.Fatalf("reopened: %d blocks, %v", len(got), err)
	}
	// Append continues the chain and refuses blocks that do not extend it.
	c, _ := ledger.NewChainFrom(blocks)
	next, err := nextSealed(c, ledger.Transfer{ID: ledger.NewTransferID(), From: "1", To: "2", Amount: 1}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(blocks[2]); !errors.Is(err, ledger.ErrBadHeight) {
		t.Fatalf("stale block: err = %v", err)
	}
	if err := s.Append(next); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(next); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := loadAll(t, s); len(got) != len(blocks)+1 {
		t.Fatalf("after append and reopen: %d blocks, want %d", len(got), len(blocks)+1)
	}
}

// Cutting the log at every byte offset of its last record recovers the
// state before that record, with a warning, and the store works on.
func TestFileStoreTornTail(t *testing.T) {
	_, g, data, offs, blocks := fixture(t, 4)
	last, end := offs[len(offs)-2], offs[len(offs)-1]
	dir := t.TempDir()
	for cut := last; cut < end; cut++ {
		path := filepath.Join(dir, "cut.log")
		if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		got, _ := loadAll(t, s)
		if len(got) != len(blocks)-1 || got[len(got)-1].Hash != blocks[len(blocks)-2].Hash {
			t.Fatalf("cut at %d: recovered %d blocks, want %d", cut, len(got), len(blocks)-1)
		}
		if torn := cut > last; torn != strings.Contains(logs.String(), "torn") {
			t.Fatalf("cut at %d: warning logged = %v, want %v: %q", cut, !torn, torn, logs.String())
		}
		if size := fileSize(t, path); size != last {
			t.Fatalf("cut at %d: file is %d bytes, want truncated to %d", cut, size, last)
		}
		if err := s.Append(blocks[len(blocks)-1]); err != nil {
			t.Fatalf("cut at %d: append after recovery: %v", cut, err)
		}
		_ = s.Close()
		if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
			t.Fatalf("cut at %d: re-appended log differs from the original", cut)
		}
	}
}

// A file with only part of the header, or a torn genesis record, never held
// a block: it is initialised again.
func TestFileStoreTornGenesis(t *testing.T) {
	_, g, data, offs, _ := fixture(t, 1)
	dir := t.TempDir()
	for cut := int64(0); cut < offs[1]; cut++ {
		path := filepath.Join(dir, "g.log")
		if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got, _ := loadAll(t, s); len(got) != 1 || got[0].Hash != g.Hash {
			t.Fatalf("cut at %d: %d blocks", cut, len(got))
		}
		_ = s.Close()
	}
}

// Flipping any byte of any stored record is refused at that block's height
// and the record's offset.
func TestFileStoreDetectsEveryByteFlip(t *testing.T) {
	_, g, data, offs, _ := fixture(t, 4)
	path := filepath.Join(t.TempDir(), "flip.log")
	for h := 0; h+1 < len(offs); h++ {
		for i := offs[h]; i < offs[h+1]; i++ {
			mod := bytes.Clone(data)
			mod[i] ^= 0xff
			if err := os.WriteFile(path, mod, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
			if err == nil {
				_ = s.Close()
			}
			var ce *ledger.CorruptError
			if !hasHeight(err, uint64(h)) || !errors.As(err, &ce) || ce.Offset != offs[h] {
				t.Fatalf("byte %d of block %d flipped: err = %v", i, h, err)
			}
		}
	}
}

// rechecksum rewrites the checksums of the record at off, as damage that a
// checksum cannot see would leave it.
func rechecksum(data []byte, off int64) {
	tab := crc32.MakeTable(crc32.Castagnoli)
	n := int64(binary.BigEndian.Uint32(data[off:]))
	binary.BigEndian.PutUint32(data[off+4:], crc32.Checksum(data[off:off+4], tab))
	payload := data[off+8 : off+8+n]
	binary.BigEndian.PutUint32(data[off+8+n:], crc32.Checksum(payload, tab))
}

// Changing any byte of a stored block and fixing up the record checksums
// is still caught, when the store is opened or when a node loads it: by
// the store if the block no longer decodes as the block of its height (at
// that height) or no longer links to the one before (at the next height),
// else by the node's verification, at that height.
func TestFileStoreDetectsTamperBehindChecksum(t *testing.T) {
	_, g, data, offs, _ := fixture(t, 4)
	path := filepath.Join(t.TempDir(), "tamper.log")
	caught := func(err error, h int) bool {
		var be *ledger.BlockError
		return hasHeight(err, uint64(h)) || hasHeight(err, uint64(h+1)) && errors.Is(err, ledger.ErrBadPrev) ||
			h == 0 && errors.Is(err, ledger.ErrGenesisMismatch) ||
			errors.As(err, &be) && be.Height == uint64(h)
	}
	for h := 0; h+1 < len(offs); h++ {
		for i := offs[h] + 8; i < offs[h+1]-4; i++ {
			mod := bytes.Clone(data)
			mod[i] ^= 0x01
			rechecksum(mod, offs[h])
			if err := os.WriteFile(path, mod, 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
			if err == nil {
				_, err = ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 0), Signer: ledger.TestKey("1"), Store: s})
				_ = s.Close()
			}
			if !caught(err, h) {
				t.Fatalf("payload byte %d of block %d changed: err = %v", i, h, err)
			}
		}
	}
}

func TestFileStoreMiddleDamageRefused(t *testing.T) {
	path, g, data, offs, _ := fixture(t, 5)
	mod := bytes.Clone(data)
	for i := offs[2]; i < offs[3]; i++ {
		mod[i] = 0
	}
	if err := os.WriteFile(path, mod, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if !hasHeight(err, 2) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, mod) {
		t.Fatal("a refused store changed the file")
	}
}

// A zero-filled tail (space allocated but never written before a crash) is
// torn, not damage.
func TestFileStoreZeroTail(t *testing.T) {
	path, g, data, _, blocks := fixture(t, 2)
	if err := os.WriteFile(path, append(bytes.Clone(data), make([]byte, 100)...), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, _ := loadAll(t, s); len(got) != len(blocks) {
		t.Fatalf("%d blocks, want %d", len(got), len(blocks))
	}
}

func TestFileStoreGenesisMismatch(t *testing.T) {
	path, _, _, _, _ := fixture(t, 1)
	other, _ := ledger.NewGenesis(memberIDs(3), 11, testPub)
	if _, err := ledger.OpenFileStore(path, other, ledger.FileOptions{}); !errors.Is(err, ledger.ErrGenesisMismatch) {
		t.Fatalf("err = %v", err)
	}
	other, _ = ledger.NewGenesis(memberIDs(4), 10, testPub)
	if _, err := ledger.OpenFileStore(path, other, ledger.FileOptions{}); !errors.Is(err, ledger.ErrGenesisMismatch) {
		t.Fatalf("err = %v", err)
	}
}

func TestFileStoreNotALedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(path, []byte("hello, world"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _ := ledger.NewGenesis(memberIDs(2), 10, testPub)
	if _, err := ledger.OpenFileStore(path, g, ledger.FileOptions{}); !errors.Is(err, ledger.ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
}
