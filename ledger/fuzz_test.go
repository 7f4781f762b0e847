package ledger_test

import (
	"bytes"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// FuzzDecodeBlock: decoding never panics, and what decodes re-encodes to
// the same bytes (the encoding is canonical).
func FuzzDecodeBlock(f *testing.F) {
	g, b := testBlocks(f)
	ge, _ := g.MarshalBinary()
	be, _ := b.MarshalBinary()
	f.Add(ge)
	f.Add(be)
	f.Add(be[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		blk, err := ledger.DecodeBlock(data)
		if err != nil {
			return
		}
		re, _ := blk.MarshalBinary()
		if !bytes.Equal(re, data) {
			t.Fatalf("decoded %v re-encodes to %x, input %x", blk, re, data)
		}
	})
}

// FuzzDecodeBatch: a release payload from a peer never makes the decoder
// panic or allocate beyond the input's size, what decodes re-encodes to
// the same bytes, and verifying it (seals included) never panics and
// accepts only what the fuzzer cannot forge: the seeds' own blocks.
func FuzzDecodeBatch(f *testing.F) {
	g, b := testBlocks(f)
	one, _ := ledger.EncodeBatch([]ledger.Block{b})
	two, _ := ledger.EncodeBatch([]ledger.Block{b, b})
	gen, _ := ledger.EncodeBatch([]ledger.Block{g})
	f.Add(one)
	f.Add(two)
	f.Add(gen)
	f.Add(one[:len(one)-1])
	f.Add([]byte{'B', 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		blocks, err := ledger.DecodeBatch(data)
		if err != nil {
			return
		}
		re, err := ledger.EncodeBatch(blocks)
		if err != nil {
			t.Fatalf("decoded %d blocks do not encode: %v", len(blocks), err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("decoded batch re-encodes to %x, input %x", re, data)
		}
		if _, err := ledger.VerifyBlocks(append([]ledger.Block{g}, blocks...)); err == nil &&
			(len(blocks) != 1 || blocks[0].Hash != b.Hash) {
			t.Fatalf("a batch of %d blocks other than the seed's verifies", len(blocks))
		}
	})
}
