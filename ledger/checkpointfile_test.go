package ledger

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func checkpointSeeds() [][]byte {
	good := encodeCheckpointFile(fileCheckpoint{genesis: Hash{1}, height: 7, start: 100, next: 180, hash: Hash{2}, data: []byte("state")})
	empty := encodeCheckpointFile(fileCheckpoint{height: 0, start: 8, next: 20})
	return [][]byte{good, empty, good[:len(good)-1], append(bytes.Clone(good), 0), nil, []byte(checkpointFileMagic)}
}

// FuzzDecodeCheckpointFile: the checkpoint file decoder never panics,
// allocates nothing (its data aliases the input), and what it accepts
// encodes back to the same bytes, with offsets that could be a record's.
func FuzzDecodeCheckpointFile(f *testing.F) {
	for _, s := range checkpointSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := decodeCheckpointFile(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeCheckpointFile(cp), b) {
			t.Fatalf("decoded %+v re-encodes to other bytes", cp)
		}
		if cp.start < int64(len(fileMagic)) || cp.next-cp.start < recordOverhead || cp.next-cp.start > MaxBlockSize+recordOverhead {
			t.Fatalf("accepted offsets %d, %d", cp.start, cp.next)
		}
	})
}

func TestCheckpointFileRoundTrip(t *testing.T) {
	want := fileCheckpoint{genesis: Hash{1}, height: 7, start: 100, next: 180, hash: Hash{2}, data: []byte("state")}
	got, err := decodeCheckpointFile(encodeCheckpointFile(want))
	if err != nil || got.genesis != want.genesis || got.height != 7 || got.start != 100 || got.next != 180 || got.hash != want.hash || string(got.data) != "state" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i, s := range checkpointSeeds()[2:] {
		if _, err := decodeCheckpointFile(s); err == nil {
			t.Errorf("seed %d decodes", i+2)
		}
	}
}

// A well-formed checkpoint file that does not match the log (another
// ledger, offsets that are not the record of its block, a block of
// another hash or height, a log cut before it) is ignored with a warning.
func TestCheckpointMismatchIgnored(t *testing.T) {
	g, _ := NewGenesis([]string{"1", "2"}, 10, testPubKeys("1", "2"))
	c, _ := NewChain(g)
	path := filepath.Join(t.TempDir(), "ledger.log")
	s, err := OpenFileStore(path, g, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blocks := []Block{g}
	for i := range 10 {
		b, err := nextSealed(c, Transfer{ID: TransferID{byte(i + 1)}, From: "1", To: "2", Amount: 1}, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
		if err := c.Append(b); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(6, []byte("state")); err != nil {
		t.Fatal(err)
	}
	good := *s.cp
	_ = s.Close()
	size := fileSizeOf(t, path)
	for name, cp := range map[string]fileCheckpoint{
		"another ledger":   with(good, func(cp *fileCheckpoint) { cp.genesis[0] ^= 1 }),
		"another height":   with(good, func(cp *fileCheckpoint) { cp.height = 5 }),
		"another hash":     with(good, func(cp *fileCheckpoint) { cp.hash = blocks[5].Hash }),
		"inside a record":  with(good, func(cp *fileCheckpoint) { cp.start++; cp.next++ }),
		"record too short": with(good, func(cp *fileCheckpoint) { cp.next-- }),
		"past the end":     with(good, func(cp *fileCheckpoint) { cp.start, cp.next = size, size+100 }),
	} {
		if err := os.WriteFile(path+checkpointSuffix, encodeCheckpointFile(cp), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := OpenFileStore(path, g, FileOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, loaded, err := s.Load()
		_ = s.Close()
		if err != nil || got != nil || len(loaded) != len(blocks) || !strings.Contains(logs.String(), "ignoring the checkpoint") {
			t.Fatalf("%s: checkpoint %+v, %d blocks, %v; log %q", name, got, len(loaded), err, logs.String())
		}
	}
}

func with(cp fileCheckpoint, edit func(*fileCheckpoint)) fileCheckpoint {
	edit(&cp)
	return cp
}

func fileSizeOf(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}
