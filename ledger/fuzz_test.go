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
