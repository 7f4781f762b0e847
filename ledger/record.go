package ledger

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The file store's log: a file header, then one record per block.
//
//	file header: the 8 bytes of fileMagic
//	record:      length uint32 | crc32c(length) uint32 | payload | crc32c(payload) uint32
//
// The length has its own checksum so that damage to it is detected instead
// of looking like a torn tail.
const (
	fileMagic        = "LLEDGER\x01"
	recordHeaderSize = 8
	recordTrailer    = 4
	recordOverhead   = recordHeaderSize + recordTrailer
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks an incomplete last record: the file ends inside it.
var errTorn = errors.New("torn record at end of file")

// appendRecord appends the record for payload to dst.
func appendRecord(dst, payload []byte) []byte {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(payload)))
	dst = append(dst, n[:]...)
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(n[:], castagnoli))
	dst = append(dst, payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
}

// appendBlockRecord appends the record holding b's encoding to dst,
// encoding b in place. It fails as Block.AppendBinary does.
func appendBlockRecord(dst []byte, b Block) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeaderSize)...)
	dst, err := b.AppendBinary(dst)
	if err != nil {
		return nil, &BlockError{Height: b.Height, Err: err}
	}
	payload := dst[start+recordHeaderSize:]
	hdr := dst[start : start+recordHeaderSize]
	binary.BigEndian.PutUint32(hdr, uint32(len(payload)))
	binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(hdr[:4], castagnoli))
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli)), nil
}

// recordReader reads records from the log after its header. It never
// allocates more than the bytes the file still holds.
type recordReader struct {
	r      *bufio.Reader
	off    int64 // offset of the next record
	size   int64 // file size
	header [recordHeaderSize]byte
	reuse  bool   // next's payloads share buf, valid until the next call
	buf    []byte // with reuse
}

func newRecordReader(r io.Reader, off, size int64) *recordReader {
	return &recordReader{r: bufio.NewReader(r), off: off, size: size}
}

// next returns the payload of the record at offset rr.off and advances.
// It returns io.EOF at a clean end, errTorn when the file ends inside a
// record (or the rest of the file is zeros, as a crash can leave it), or
// another error for a damaged record; rr.off then stays at the record.
func (rr *recordReader) next() ([]byte, error) {
	left := rr.size - rr.off
	if left == 0 {
		return nil, io.EOF
	}
	if left < recordHeaderSize {
		return nil, errTorn
	}
	if _, err := io.ReadFull(rr.r, rr.header[:]); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	n := binary.BigEndian.Uint32(rr.header[:4])
	if crc32.Checksum(rr.header[:4], castagnoli) != binary.BigEndian.Uint32(rr.header[4:]) {
		if rr.header == [recordHeaderSize]byte{} && rr.zerosToEnd() {
			return nil, errTorn
		}
		return nil, errors.New("record length checksum mismatch")
	}
	if n > MaxBlockSize {
		return nil, fmt.Errorf("record of %d bytes, more than %d", n, MaxBlockSize)
	}
	if int64(n)+recordOverhead > left {
		return nil, errTorn
	}
	var buf []byte
	if rr.reuse {
		if cap(rr.buf) < int(n)+recordTrailer {
			rr.buf = make([]byte, int(n)+recordTrailer)
		}
		buf = rr.buf[:int(n)+recordTrailer]
	} else {
		buf = make([]byte, int(n)+recordTrailer)
	}
	if _, err := io.ReadFull(rr.r, buf); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	payload := buf[:n]
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(buf[n:]) {
		return nil, errors.New("record checksum mismatch")
	}
	rr.off += int64(n) + recordOverhead
	return payload, nil
}

// zerosToEnd reports whether every remaining byte of the file is zero.
func (rr *recordReader) zerosToEnd() bool {
	var buf [512]byte
	for {
		n, err := rr.r.Read(buf[:])
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}
