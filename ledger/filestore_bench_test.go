package ledger

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// benchLog writes a log of n blocks after the genesis of a 3-member
// ledger, with a checkpoint at height n-cpBack (none if cpBack < 0), by
// writing the records directly: the blocks carry a 64-byte seal and link
// correctly, but their hashes and seals are stand-ins, which a store does
// not check. The file is synced, so that opening it syncs nothing.
func benchLog(tb testing.TB, dir string, n, cpBack int) (string, Block) {
	tb.Helper()
	g, err := NewGenesis([]string{"1", "2", "3"}, DefaultInitialBalance, testPubKeys("1", "2", "3"))
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%d.log", n))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	enc, _ := g.MarshalBinary()
	rec := appendRecord([]byte(fileMagic), enc)
	off := int64(0)
	prev, sig := g, make([]byte, 64)
	var cp fileCheckpoint
	for h := uint64(1); ; h++ {
		if _, err := w.Write(rec); err != nil {
			tb.Fatal(err)
		}
		if int(h-1) == n-cpBack {
			cp = fileCheckpoint{genesis: g.Hash, height: prev.Height, start: off, next: off + int64(len(rec)), hash: prev.Hash, data: make([]byte, 4096)}
		}
		off += int64(len(rec))
		if h > uint64(n) {
			break
		}
		b := Block{Height: h, Prev: prev.Hash, Clock: h, Sig: sig,
			Transfer: Transfer{ID: TransferID{byte(h), byte(h >> 8), byte(h >> 16), byte(h >> 24)}, From: fmt.Sprint(1 + h%3), To: fmt.Sprint(1 + (h+1)%3), Amount: 1}}
		binary.BigEndian.PutUint64(b.Hash[:], h)
		if rec, err = appendBlockRecord(rec[:0], b); err != nil {
			tb.Fatal(err)
		}
		prev = b
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if cpBack >= 0 {
		if err := writeCheckpointFile(path+checkpointSuffix, cp, false); err != nil {
			tb.Fatal(err)
		}
	}
	return path, g
}

// BenchmarkFileStoreOpen: opening a log of 10k, 100k or 1M blocks and
// loading it, from a checkpoint 100 blocks before its head or whole, with
// the log in the page cache. heap-B is the heap the open store and what
// Load returned hold (after a GC); B/op is what opening allocated in all.
func BenchmarkFileStoreOpen(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, cpBack := range []int{100, -1} {
			name := fmt.Sprintf("blocks=%d/checkpoint", n)
			if cpBack < 0 {
				name = fmt.Sprintf("blocks=%d/whole", n)
			}
			b.Run(name, func(b *testing.B) {
				path, g := benchLog(b, b.TempDir(), n, cpBack)
				var before, after runtime.MemStats
				b.ReportAllocs()
				heap, open := uint64(0), time.Duration(0)
				for b.Loop() {
					runtime.GC()
					runtime.ReadMemStats(&before)
					start := time.Now()
					s, err := OpenFileStore(path, g, FileOptions{})
					if err != nil {
						b.Fatal(err)
					}
					cp, blocks, err := s.Load()
					if err != nil {
						b.Fatal(err)
					}
					open += time.Since(start)
					runtime.GC()
					runtime.ReadMemStats(&after)
					heap += after.HeapAlloc - before.HeapAlloc
					if (cp == nil) != (cpBack < 0) || len(blocks) != min(cpBack, n) && cpBack >= 0 {
						b.Fatalf("loaded %+v and %d blocks", cp, len(blocks))
					}
					runtime.KeepAlive(blocks)
					_ = s.Close()
				}
				b.ReportMetric(float64(heap)/float64(b.N), "heap-B")
				b.ReportMetric(open.Seconds()*1000/float64(b.N), "open-ms")
			})
		}
	}
}
