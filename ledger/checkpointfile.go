package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The file store's checkpoint file, beside the log: a file header, then one
// record framed as the log's are (see record.go), whose payload is
//
//	genesis hash [32] | height u64 | start u64 | next u64 | block hash [32] | data
//
// all big-endian: the ledger it belongs to, the height it covers, the log
// offsets of the record of the block at that height and of the record
// after it, that block's hash, and the node's data. A file that does not
// decode, or that does not match the log (another genesis, offsets past
// its end, another block there), is ignored: the log is read whole.
const (
	checkpointFileMagic = "LLCHKPT\x01"
	checkpointSuffix    = ".checkpoint"
	checkpointFixed     = 32 + 8 + 8 + 8 + 32
	// maxCheckpointFile bounds the checkpoint file read at open.
	maxCheckpointFile = len(checkpointFileMagic) + recordOverhead + checkpointFixed + MaxCheckpointSize
)

// fileCheckpoint is a decoded checkpoint file.
type fileCheckpoint struct {
	genesis Hash
	height  uint64
	start   int64 // offset of the record of the block at height
	next    int64 // offset of the record after it
	hash    Hash  // that block's hash
	data    []byte
}

// encodeCheckpointFile returns the bytes of the checkpoint file for cp.
func encodeCheckpointFile(cp fileCheckpoint) []byte {
	p := make([]byte, 0, checkpointFixed+len(cp.data))
	p = append(p, cp.genesis[:]...)
	p = binary.BigEndian.AppendUint64(p, cp.height)
	p = binary.BigEndian.AppendUint64(p, uint64(cp.start))
	p = binary.BigEndian.AppendUint64(p, uint64(cp.next))
	p = append(p, cp.hash[:]...)
	p = append(p, cp.data...)
	return appendRecord([]byte(checkpointFileMagic), p)
}

// decodeCheckpointFile decodes the bytes of a checkpoint file. It checks
// the framing, the checksums and that the offsets are plausible, and
// refuses trailing bytes; data aliases b.
func decodeCheckpointFile(b []byte) (fileCheckpoint, error) {
	var cp fileCheckpoint
	if len(b) > maxCheckpointFile {
		return cp, fmt.Errorf("%d bytes, more than %d", len(b), maxCheckpointFile)
	}
	if !bytes.HasPrefix(b, []byte(checkpointFileMagic)) {
		return cp, errors.New("bad header")
	}
	b = b[len(checkpointFileMagic):]
	if len(b) < recordOverhead+checkpointFixed {
		return cp, errors.New("too short")
	}
	n := binary.BigEndian.Uint32(b)
	if crc32.Checksum(b[:4], castagnoli) != binary.BigEndian.Uint32(b[4:]) {
		return cp, errors.New("length checksum mismatch")
	}
	if uint64(n) != uint64(len(b)-recordOverhead) {
		return cp, fmt.Errorf("length %d, but %d bytes follow", n, len(b)-recordOverhead)
	}
	p := b[recordHeaderSize : recordHeaderSize+int(n)]
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(b[recordHeaderSize+int(n):]) {
		return cp, errors.New("checksum mismatch")
	}
	copy(cp.genesis[:], p)
	cp.height = binary.BigEndian.Uint64(p[32:])
	start, next := binary.BigEndian.Uint64(p[40:]), binary.BigEndian.Uint64(p[48:])
	copy(cp.hash[:], p[56:])
	cp.data = p[checkpointFixed:]
	if start < uint64(len(fileMagic)) || next < start+recordOverhead || next-start > MaxBlockSize+recordOverhead || next > 1<<62 {
		return cp, fmt.Errorf("offsets %d and %d are not those of a record", start, next)
	}
	cp.start, cp.next = int64(start), int64(next)
	return cp, nil
}

// readCheckpointFile reads and decodes the checkpoint file at path. A
// missing file is (nil, nil).
func readCheckpointFile(path string) (*fileCheckpoint, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNoFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() || info.Size() > int64(maxCheckpointFile) {
		return nil, fmt.Errorf("not a regular file of at most %d bytes", maxCheckpointFile)
	}
	b := make([]byte, info.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	cp, err := decodeCheckpointFile(b)
	if err != nil {
		return nil, err
	}
	return &cp, nil
}

// writeCheckpointFile replaces the checkpoint file at path with cp's: it
// writes a temporary file, syncs it, renames it over path and syncs the
// folder (no syncs if noSync), so that a crash leaves the old file or the
// new one.
func writeCheckpointFile(path string, cp fileCheckpoint, noSync bool) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|openNoFollow, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeCheckpointFile(cp))
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if noSync {
		return nil
	}
	return syncDir(filepath.Dir(path))
}
