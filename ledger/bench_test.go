package ledger_test

import (
	"context"
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

func benchmarkAppend(b *testing.B, noSync bool) {
	c := newChain(b, memberIDs(2))
	s, err := ledger.OpenFileStore(filepath.Join(b.TempDir(), "bench.log"), c.Genesis(), ledger.FileOptions{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	from, to := "1", "2"
	b.ReportAllocs()
	for b.Loop() {
		blk, err := nextSealed(c, ledger.Transfer{ID: ledger.NewTransferID(), From: from, To: to, Amount: 1}, uint64(c.Len()))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Append(blk); err != nil {
			b.Fatal(err)
		}
		if err := s.Append(blk); err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
		from, to = to, from
	}
}

func BenchmarkFileStoreAppend(b *testing.B) {
	b.Run("sync", func(b *testing.B) { benchmarkAppend(b, false) })
	b.Run("nosync", func(b *testing.B) { benchmarkAppend(b, true) })
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
