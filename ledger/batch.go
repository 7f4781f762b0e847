package ledger

import (
	"encoding/binary"
	"fmt"
)

// The release payload: the blocks one mutex entry committed, in chain
// order. All integers are big-endian.
//
//	magic    uint8  ('B')
//	version  uint8  (1)
//	count    uint32 (1 to MaxBatch)
//	count × (length uint32, block encoding of that length)
const (
	batchMagic   = 'B'
	batchVersion = 1
	batchHeader  = 1 + 1 + 4
)

// MaxBatch bounds the blocks one release may carry; Config.MaxBatch may not
// exceed it.
const MaxBatch = 4096

// EncodeBatch encodes blocks, in order, as a release payload.
func EncodeBatch(blocks []Block) ([]byte, error) {
	if len(blocks) == 0 || len(blocks) > MaxBatch {
		return nil, fmt.Errorf("%w: batch of %d blocks", ErrMalformedBlock, len(blocks))
	}
	buf := make([]byte, batchHeader, batchHeader+len(blocks)*160)
	buf[0], buf[1] = batchMagic, batchVersion
	binary.BigEndian.PutUint32(buf[2:], uint32(len(blocks)))
	for _, b := range blocks {
		at := len(buf)
		buf = append(buf, 0, 0, 0, 0)
		var err error
		if buf, err = b.AppendBinary(buf); err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	}
	return buf, nil
}

// DecodeBatch decodes a release payload. It never panics, and it bounds
// every count and length by the input's size before allocating.
func DecodeBatch(data []byte) ([]Block, error) {
	if len(data) > MaxBatch*MaxBlockSize {
		return nil, fmt.Errorf("%w: batch of %d bytes", ErrMalformedBlock, len(data))
	}
	d := decoder{buf: data}
	magic, version, count := d.byte(), d.byte(), d.uint32()
	switch {
	case d.err != nil:
		return nil, d.err
	case magic != batchMagic || version != batchVersion:
		return nil, fmt.Errorf("%w: not a batch (magic %#x, version %d)", ErrMalformedBlock, magic, version)
	case count == 0 || count > MaxBatch:
		return nil, fmt.Errorf("%w: batch of %d blocks", ErrMalformedBlock, count)
	case uint64(count) > uint64(len(data)-batchHeader)/uint64(4+headerSize):
		return nil, fmt.Errorf("%w: %d blocks do not fit in %d bytes", ErrMalformedBlock, count, len(data))
	}
	blocks := make([]Block, 0, count)
	for i := range count {
		n := d.uint32()
		if d.err == nil && n > MaxBlockSize {
			d.fail("block %d of %d bytes", i, n)
		}
		raw := d.take(int(n))
		if d.err != nil {
			return nil, d.err
		}
		b, err := decodeBlock(raw)
		if err != nil {
			return nil, fmt.Errorf("batch block %d: %w", i, err)
		}
		blocks = append(blocks, b)
	}
	if d.off != len(data) {
		return nil, fmt.Errorf("%w: %d bytes after the batch", ErrMalformedBlock, len(data)-d.off)
	}
	return blocks, nil
}
