package ledger_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// storeKind makes one kind of Store for the contract tests.
type storeKind struct {
	name string
	open func(t *testing.T, g ledger.Block) ledger.Store
	// reopen closes s and opens what it stored again, after a power cut
	// if the kind has one; nil for a store that keeps nothing.
	reopen func(t *testing.T, s ledger.Store) ledger.Store
}

func storeKinds() []storeKind {
	return []storeKind{
		{name: "MemStore", open: func(t *testing.T, g ledger.Block) ledger.Store {
			s, err := ledger.NewMemStore(g)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "FileStore", open: func(t *testing.T, g ledger.Block) ledger.Store {
			s, err := ledger.OpenFileStore(filepath.Join(t.TempDir(), "ledger.log"), g, ledger.FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}, reopen: func(t *testing.T, s ledger.Store) ledger.Store {
			fs := s.(*ledger.FileStore)
			if err := fs.Close(); err != nil {
				t.Fatal(err)
			}
			again, err := ledger.OpenFileStore(fs.Path(), fs.Genesis(), ledger.FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return again
		}},
		{name: "lossyStore", open: func(t *testing.T, g ledger.Block) ledger.Store {
			return newLossyStore(g)
		}, reopen: func(t *testing.T, s ledger.Store) ledger.Store {
			return s.(*lossyStore).restart()
		}},
	}
}

// storeBlocks returns n blocks after g, in runs of 3 by one sender, each
// run sealed at its end: a Store checks links only, not seals.
func storeBlocks(g ledger.Block, n int) []ledger.Block {
	blocks := []ledger.Block{g}
	for len(blocks) <= n {
		from := fmt.Sprint(1 + len(blocks)%3)
		blocks = append(blocks, makeRun(blocks[len(blocks)-1], from, "3", min(3, n+1-len(blocks)), uint64(len(blocks)), ledger.TestKey(from))...)
	}
	return blocks
}

// sameBlocks reports where got and want first differ, nil if nowhere.
func sameBlocks(got, want []ledger.Block) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d blocks, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Hash != want[i].Hash || got[i].Height != want[i].Height || !bytes.Equal(got[i].Sig, want[i].Sig) {
			return fmt.Errorf("block %d is %v, want %v", i, got[i], want[i])
		}
	}
	return nil
}

// loaded returns the whole chain a store's Load gives: the blocks up to
// the checkpoint, taken from appended, then those Load returns.
func loaded(s ledger.Store, appended []ledger.Block) (*ledger.Checkpoint, []ledger.Block, error) {
	cp, blocks, err := s.Load()
	if err != nil || cp == nil {
		return cp, blocks, err
	}
	if cp.Height >= uint64(len(appended)) {
		return cp, nil, fmt.Errorf("checkpoint at %d, beyond the %d blocks appended", cp.Height, len(appended))
	}
	return cp, append(appended[:cp.Height+1:cp.Height+1], blocks...), nil
}

// checkPrefix checks that got is a prefix of appended (genesis first) of
// at least atLeast blocks.
func checkPrefix(got, appended []ledger.Block, atLeast int) error {
	if len(got) > len(appended) {
		return fmt.Errorf("%d blocks, but only %d were appended", len(got), len(appended))
	}
	if len(got) < atLeast {
		return fmt.Errorf("%d blocks, but %d were durable", len(got), atLeast)
	}
	return sameBlocks(got, appended[:len(got)])
}

// The prefix check is checked: it catches a lost durable block, a gap, a
// changed block and an invented one.
func TestCheckPrefixCatches(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 6)
	if err := checkPrefix(blocks[:5], blocks, 4); err != nil {
		t.Fatalf("a true prefix refused: %v", err)
	}
	other := storeBlocks(g, 6)
	for name, got := range map[string][]ledger.Block{
		"lost durable": blocks[:3],
		"gap":          append(append([]ledger.Block{}, blocks[:2]...), blocks[3:5]...),
		"changed":      append(append([]ledger.Block{}, blocks[:4]...), other[4]),
		"invented":     append(append([]ledger.Block{}, blocks...), other[6]),
	} {
		if checkPrefix(got, blocks, 4) == nil {
			t.Errorf("%s: not caught", name)
		}
	}
}

// Every Store keeps the contract written on the interface.
func TestStoreContract(t *testing.T) {
	for _, k := range storeKinds() {
		t.Run(k.name, func(t *testing.T) { testStoreContract(t, k) })
	}
}

func testStoreContract(t *testing.T, k storeKind) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, ledger.MaxReadBlocks+200)
	head := uint64(len(blocks) - 1)
	s := k.open(t, g)
	defer func() { _ = s.Close() }()
	if s.Genesis().Hash != g.Hash {
		t.Fatal("Genesis is not the genesis")
	}
	if cp, got, err := s.Load(); cp != nil || err != nil || sameBlocks(got, blocks[:1]) != nil {
		t.Fatalf("new store: Load = %v, %d blocks, %v", cp, len(got), err)
	}

	// Append checks links; a refused Append stores nothing.
	if err := s.Append(blocks[2]); !errors.Is(err, ledger.ErrBadHeight) {
		t.Fatalf("append of height 2 on 0: %v", err)
	}
	bad := blocks[1]
	bad.Prev[0] ^= 1
	if err := s.Append(bad); !errors.Is(err, ledger.ErrBadPrev) {
		t.Fatalf("append with a bad Prev: %v", err)
	}
	if err := s.Append(blocks[1], blocks[3]); !errors.Is(err, ledger.ErrBadHeight) {
		t.Fatalf("append with a gap: %v", err)
	}
	if _, got, _ := s.Load(); len(got) != 1 {
		t.Fatalf("refused appends stored %d blocks", len(got)-1)
	}
	if err := s.Append(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(blocks); i += 700 {
		if err := s.Append(blocks[i:min(i+700, len(blocks))]...); err != nil {
			t.Fatal(err)
		}
	}

	// Read serves any span up to MaxReadBlocks, synced or not.
	for _, span := range [][2]uint64{{0, 0}, {0, 10}, {255, 257}, {1, ledger.MaxReadBlocks}, {head, head}, {head - ledger.MaxReadBlocks + 1, head}} {
		got, err := s.Read(span[0], span[1])
		if err != nil {
			t.Fatalf("Read(%d, %d): %v", span[0], span[1], err)
		}
		if err := sameBlocks(got, blocks[span[0]:span[1]+1]); err != nil {
			t.Fatalf("Read(%d, %d): %v", span[0], span[1], err)
		}
	}
	for _, span := range [][2]uint64{{5, 4}, {0, head + 1}, {head + 1, head + 1}, {0, ledger.MaxReadBlocks}} {
		if _, err := s.Read(span[0], span[1]); err == nil {
			t.Fatalf("Read(%d, %d) of %d blocks: no error", span[0], span[1], len(blocks))
		}
	}

	// A checkpoint only at a synced height, of bounded size.
	data := []byte("balances and such")
	if err := s.SaveCheckpoint(3000, data); err == nil {
		t.Fatal("checkpoint at an unsynced height: no error")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(head+1, data); err == nil {
		t.Fatal("checkpoint beyond the head: no error")
	}
	if err := s.SaveCheckpoint(3000, make([]byte, ledger.MaxCheckpointSize+1)); err == nil {
		t.Fatal("checkpoint too large: no error")
	}
	if err := s.SaveCheckpoint(2000, []byte("older")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(3000, data); err != nil {
		t.Fatal(err)
	}
	data[0] = 'B' // the store kept its own copy
	checkLoad := func(s ledger.Store, to uint64) {
		t.Helper()
		cp, got, err := s.Load()
		if err != nil || cp == nil || cp.Height != 3000 || string(cp.Data) != "balances and such" {
			t.Fatalf("Load: checkpoint %+v, %v", cp, err)
		}
		if err := sameBlocks(got, blocks[3001:to+1]); err != nil {
			t.Fatalf("Load after the checkpoint: %v", err)
		}
	}
	checkLoad(s, head)

	// Truncate keeps the checkpoint, and appends go on after it.
	if err := s.Truncate(2999); err == nil {
		t.Fatal("truncate below the checkpoint: no error")
	}
	if err := s.Truncate(head + 1); err == nil {
		t.Fatal("truncate beyond the head: no error")
	}
	if err := s.Truncate(4100); err != nil {
		t.Fatal(err)
	}
	checkLoad(s, 4100)
	if _, err := s.Read(4101, 4101); err == nil {
		t.Fatal("a truncated block is read")
	}
	if err := s.Append(blocks[4102]); !errors.Is(err, ledger.ErrBadHeight) {
		t.Fatalf("append after truncate, with a gap: %v", err)
	}
	if err := s.Append(blocks[4101:]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	checkLoad(s, head)

	if k.reopen != nil {
		s = k.reopen(t, s)
		checkLoad(s, head)
		// Blocks below the checkpoint are read from the disk.
		for _, span := range [][2]uint64{{1, 300}, {0, 0}, {2990, 3010}, {1000, 1000}, {head - 5, head}} {
			got, err := s.Read(span[0], span[1])
			if err != nil {
				t.Fatalf("reopened: Read(%d, %d): %v", span[0], span[1], err)
			}
			if err := sameBlocks(got, blocks[span[0]:span[1]+1]); err != nil {
				t.Fatalf("reopened: Read(%d, %d): %v", span[0], span[1], err)
			}
		}
		if err := s.Append(blocks[1]); !errors.Is(err, ledger.ErrBadHeight) {
			t.Fatalf("reopened: append of a stale block: %v", err)
		}
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	for name, call := range map[string]func() error{
		"Load":           func() error { _, _, err := s.Load(); return err },
		"Append":         func() error { return s.Append(blocks[1]) },
		"Sync":           s.Sync,
		"Read":           func() error { _, err := s.Read(0, 0); return err },
		"Truncate":       func() error { return s.Truncate(head) },
		"SaveCheckpoint": func() error { return s.SaveCheckpoint(0, nil) },
	} {
		if err := call(); !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

// Append (with a Truncate now and then), Sync and Read run concurrently,
// under -race: every Read sees blocks as appended.
func TestStoreConcurrentUse(t *testing.T) {
	for _, k := range storeKinds() {
		t.Run(k.name, func(t *testing.T) {
			g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
			blocks := storeBlocks(g, 1500)
			s := k.open(t, g)
			defer func() { _ = s.Close() }()
			var head atomic.Uint64
			var wg sync.WaitGroup
			done := make(chan struct{})
			errs := make(chan error, 3)
			wg.Add(3)
			go func() {
				defer wg.Done()
				defer close(done)
				for i := 1; i < len(blocks); i += 7 {
					end := min(i+7, len(blocks))
					if err := s.Append(blocks[i:end]...); err != nil {
						errs <- err
						return
					}
					if i%4 == 0 { // drop the last 3 and write them again
						if err := s.Truncate(uint64(end - 4)); err != nil {
							errs <- err
							return
						}
						if err := s.Append(blocks[end-3 : end]...); err != nil {
							errs <- err
							return
						}
					}
					head.Store(uint64(max(end-5, 0))) // what no Truncate drops
				}
			}()
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					if err := s.Sync(); err != nil {
						errs <- err
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(3, 4))
				for {
					select {
					case <-done:
						return
					default:
					}
					h := head.Load()
					from := rng.Uint64N(h + 1)
					to := min(h, from+rng.Uint64N(600))
					got, err := s.Read(from, to)
					if err == nil {
						err = sameBlocks(got, blocks[from:to+1])
					}
					if err != nil {
						errs <- fmt.Errorf("Read(%d, %d): %w", from, to, err)
						return
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			if _, got, err := s.Load(); err != nil || sameBlocks(got, blocks) != nil {
				t.Fatalf("after: %d blocks, %v", len(got), err)
			}
		})
	}
}

// A power cut loses exactly the blocks appended since the last Sync; the
// checkpoint, and the blocks it covers, stay.
func TestLossyStorePowerCut(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 40)
	s := newLossyStore(g)
	if err := s.Append(blocks[1:11]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(9, []byte("cp")); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(blocks[11:20]...); err != nil {
		t.Fatal(err)
	}
	if lost := s.powerCut(); lost != 9 {
		t.Fatalf("lost %d blocks, want 9", lost)
	}
	cp, got, err := loaded(s, blocks)
	if err != nil || cp == nil || cp.Height != 9 {
		t.Fatalf("after a power cut: checkpoint %+v, %v", cp, err)
	}
	if err := checkPrefix(got, blocks, 11); err != nil || len(got) != 11 {
		t.Fatalf("after a power cut: %d blocks, %v", len(got), err)
	}
	// Appends go on from the durable head; a restart keeps what is synced.
	if err := s.Append(blocks[11:30]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(blocks[30:]...); err != nil {
		t.Fatal(err)
	}
	s = s.restart()
	if _, got, err = loaded(s, blocks); err != nil || checkPrefix(got, blocks, 30) != nil || len(got) != 30 {
		t.Fatalf("after a restart: %d blocks, %v", len(got), err)
	}
}

// The durability check that lossyStore serves is checked: a store whose
// power cut also loses a synced block is caught.
func TestLossyStoreCheckCatchesLostSyncedBlock(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 10)
	s := newLossyStore(g)
	if err := s.Append(blocks[1:]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.powerCut()
	if err := s.d.ms.Truncate(9); err != nil { // the broken variant: block 10 was synced
		t.Fatal(err)
	}
	if _, got, err := loaded(s, blocks); err != nil || checkPrefix(got, blocks, len(blocks)) == nil {
		t.Fatalf("a lost synced block was not caught (%d blocks, %v)", len(got), err)
	}
}
