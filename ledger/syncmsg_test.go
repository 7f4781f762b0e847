package ledger

import (
	"bytes"
	"errors"
	"testing"
)

func syncTestBlocks(t testing.TB) []Block {
	t.Helper()
	g, err := NewGenesis([]string{"1", "2"}, 10, testPubKeys("1", "2", "3"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		b, err := nextSealed(c, Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: int64(i + 1)}, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	return chainBlocks(c)[1:]
}

func TestSyncMessageRoundTrip(t *testing.T) {
	blocks := syncTestBlocks(t)
	for _, m := range []syncMsg{
		{op: opHead, height: 7, hash: blocks[0].Hash},
		{op: opHead, round: 3, height: 1, hash: blocks[1].Hash},
		{op: opAnswer, round: 3, height: 2, hash: blocks[1].Hash},
		{op: opBlocks, blocks: blocks},
	} {
		data, err := encodeSync(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeSync(data)
		if err != nil {
			t.Fatalf("%s: %v", m.op, err)
		}
		if got.op != m.op || got.round != m.round || got.height != m.height || got.hash != m.hash || len(got.blocks) != len(m.blocks) {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
		for i := range got.blocks {
			if got.blocks[i].Hash != m.blocks[i].Hash {
				t.Fatalf("block %d changed in the round trip", i)
			}
		}
	}
	// Blocks out of order are refused: catch-up sends consecutive blocks.
	data, _ := encodeSync(syncMsg{op: opBlocks, blocks: []Block{blocks[1], blocks[0]}})
	if _, err := decodeSync(data); !errors.Is(err, ErrMalformedBlock) {
		t.Fatalf("blocks out of order: %v, want ErrMalformedBlock", err)
	}
	if _, err := encodeSync(syncMsg{op: 9}); err == nil {
		t.Fatal("encoding an unknown op succeeded")
	}
}

// FuzzDecodeSync: a catch-up message from a peer never makes the decoder
// panic, and what decodes re-encodes to the same bytes.
func FuzzDecodeSync(f *testing.F) {
	blocks := syncTestBlocks(f)
	for _, m := range []syncMsg{
		{op: opHead, round: 1, height: 2, hash: blocks[1].Hash},
		{op: opAnswer, round: 1, height: 2, hash: blocks[1].Hash},
		{op: opBlocks, blocks: blocks},
	} {
		data, _ := encodeSync(m)
		f.Add(data)
		f.Add(data[:len(data)-1])
	}
	f.Add([]byte{syncMagic, syncVersion, byte(opBlocks), 'B', 1, 0, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeSync(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedBlock) {
				t.Fatalf("error %v does not wrap ErrMalformedBlock", err)
			}
			return
		}
		re, err := encodeSync(m)
		if err != nil {
			t.Fatalf("decoded %s does not encode: %v", m.op, err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("decoded %s re-encodes to %x, input %x", m.op, re, data)
		}
	})
}
