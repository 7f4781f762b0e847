package ledger_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// recordEnds returns the log offset after each block's record (genesis
// first): the file header, then per block its encoding and 12 bytes of
// length and checksums.
func recordEnds(t testing.TB, blocks []ledger.Block) []int64 {
	t.Helper()
	ends := make([]int64, len(blocks))
	end := int64(8)
	for i, b := range blocks {
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		end += int64(len(enc)) + 12
		ends[i] = end
	}
	return ends
}

// What a crash leaves of the log is a prefix of what was appended: cut at
// every byte offset of its last records (the checkpoint's among them),
// the log opens, with no error, to exactly the blocks whose records are
// whole, and from the checkpoint if its record is whole.
func TestFileStorePrefixAtEveryCut(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 34)
	const cpHeight = 30
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.log")
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, size := 1, 1; i < len(blocks); i, size = i+size, size%4+1 {
		if err := s.Append(blocks[i:min(i+size, len(blocks))]...); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		if i <= cpHeight && cpHeight < i+size {
			if err := s.SaveCheckpoint(cpHeight, []byte("state")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cpFile, err := os.ReadFile(path + ".checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(t, blocks)
	if ends[len(ends)-1] != int64(len(full)) {
		t.Fatalf("records end at %d, the file at %d", ends[len(ends)-1], len(full))
	}
	for cut := ends[cpHeight-2]; cut <= int64(len(full)); cut++ {
		if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".checkpoint", cpFile, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{NoSync: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		whole := 0
		for whole < len(ends) && ends[whole] <= cut {
			whole++
		}
		cp, got, err := loaded(s, blocks)
		_ = s.Close()
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if err := checkPrefix(got, blocks, whole); err != nil || len(got) != whole {
			t.Fatalf("cut at %d: %d blocks, want the %d whole ones: %v", cut, len(got), whole, err)
		}
		if (cp != nil) != (whole > cpHeight) {
			t.Fatalf("cut at %d, %d whole blocks: loaded from checkpoint %+v", cut, whole, cp)
		}
		if torn := cut != ends[whole-1]; torn != strings.Contains(logs.String(), "torn") {
			t.Fatalf("cut at %d: torn = %v, but the log says %q", cut, torn, logs.String())
		}
		if ignored := whole <= cpHeight; ignored != strings.Contains(logs.String(), "ignoring the checkpoint") {
			t.Fatalf("cut at %d: checkpoint ignored = %v, but the log says %q", cut, ignored, logs.String())
		}
	}
}

// A damaged checkpoint file is ignored with a warning: the whole log is
// read, and nothing else changes. It is never an error.
func TestFileStoreDamagedCheckpointIgnored(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 20)
	path := filepath.Join(t.TempDir(), "ledger.log")
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(blocks[1:]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(15, []byte("state")); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	good, err := os.ReadFile(path + ".checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	open := func(what string, cpFile []byte) (*ledger.Checkpoint, string) {
		t.Helper()
		if err := os.WriteFile(path+".checkpoint", cpFile, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{NoSync: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer s.Close()
		cp, got, err := loaded(s, blocks)
		if err != nil || sameBlocks(got, blocks) != nil {
			t.Fatalf("%s: %d blocks, %v", what, len(got), err)
		}
		return cp, logs.String()
	}
	if cp, _ := open("intact", good); cp == nil || cp.Height != 15 || string(cp.Data) != "state" {
		t.Fatalf("intact checkpoint file: loaded %+v", cp)
	}
	for i := range good {
		for _, flip := range []byte{0x01, 0x80} {
			mod := bytes.Clone(good)
			mod[i] ^= flip
			if cp, logs := open("flip", mod); cp != nil || !strings.Contains(logs, "ignoring the checkpoint") {
				t.Fatalf("byte %d flipped by %#x: checkpoint %+v, log %q", i, flip, cp, logs)
			}
		}
	}
	for n := range good {
		if cp, logs := open("cut", good[:n]); cp != nil || !strings.Contains(logs, "ignoring the checkpoint") {
			t.Fatalf("cut at %d: checkpoint %+v, log %q", n, cp, logs)
		}
	}
	if cp, logs := open("trailing byte", append(bytes.Clone(good), 0)); cp != nil || !strings.Contains(logs, "ignoring the checkpoint") {
		t.Fatalf("trailing byte: checkpoint %+v, log %q", cp, logs)
	}
}
