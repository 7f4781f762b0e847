package ledger_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

func BenchmarkBlockHash(b *testing.B) {
	_, blk := testBlocks(b)
	b.ReportAllocs()
	for b.Loop() {
		blk.ComputeHash()
	}
}

func BenchmarkBlockEncode(b *testing.B) {
	_, blk := testBlocks(b)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = blk.AppendBinary(buf[:0])
	}
}

func BenchmarkBlockDecode(b *testing.B) {
	_, blk := testBlocks(b)
	enc, _ := blk.MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ledger.DecodeBlock(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// benchmarkAppend appends one block per op, and syncs after it unless
// writeOnly (with noSync the sync does nothing). The blocks link, but
// their hashes and seals are stand-ins, which a store does not check, so
// that only the store is measured.
func benchmarkAppend(b *testing.B, noSync, writeOnly bool) {
	c := newChain(b, memberIDs(2))
	s, err := ledger.OpenFileStore(filepath.Join(b.TempDir(), "bench.log"), c.Genesis(), ledger.FileOptions{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	prev, sig := c.Genesis(), make([]byte, ledger.SigSize)
	b.ReportAllocs()
	for b.Loop() {
		h := prev.Height + 1
		blk := ledger.Block{Height: h, Prev: prev.Hash, Clock: h, Sig: sig,
			Transfer: ledger.Transfer{ID: ledger.TransferID{byte(h), byte(h >> 8), byte(h >> 16)}, From: "1", To: "2", Amount: 1}}
		binary.BigEndian.PutUint64(blk.Hash[:], h)
		if err := s.Append(blk); err != nil {
			b.Fatal(err)
		}
		if !writeOnly {
			if err := s.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		prev = blk
	}
}

func BenchmarkFileStoreAppend(b *testing.B) {
	b.Run("sync", func(b *testing.B) { benchmarkAppend(b, false, false) })
	b.Run("nosync", func(b *testing.B) { benchmarkAppend(b, true, false) })
	b.Run("write", func(b *testing.B) { benchmarkAppend(b, false, true) })
}

// BenchmarkNodeTransfer3: committed transfers among 3 nodes over the
// in-test locker (no network), stores in memory: the ledger's own cost.
func BenchmarkNodeTransfer3(b *testing.B) {
	_, nodes := newTestCluster(b, 3, nil)
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		n := nodes[i%3]
		to := nodes[(i+1)%3].ID()
		if _, err := n.Transfer(ctx, to, 1); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
