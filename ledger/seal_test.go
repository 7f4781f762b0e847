package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/ledger"
)

// outsiderKey is a key that no genesis in these tests holds.
var outsiderKey = func() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("not a member"))
	return ed25519.NewKeyFromSeed(seed[:])
}()

// makeRun builds n blocks extending head, each a transfer of 1 from from
// to to under clock, with one seal, by key, on the last.
func makeRun(head ledger.Block, from, to string, n int, clock uint64, key ed25519.PrivateKey) []ledger.Block {
	run := make([]ledger.Block, n)
	for i := range run {
		b := ledger.Block{Height: head.Height + 1, Prev: head.Hash, Clock: clock,
			Transfer: ledger.Transfer{ID: ledger.NewTransferID(), From: from, To: to, Amount: 1}}
		b.Hash = b.ComputeHash()
		run[i], head = b, b
	}
	run[n-1] = run[n-1].Seal(key)
	return run
}

// rehashFrom recomputes the hashes and links of blocks from index i on,
// keeping their seals, as someone without the keys would after editing
// block i.
func rehashFrom(blocks []ledger.Block, i int) {
	for ; i < len(blocks); i++ {
		if i > 0 {
			blocks[i].Prev = blocks[i-1].Hash
		}
		blocks[i].Hash = blocks[i].ComputeHash()
	}
}

func TestNewGenesisChecksKeys(t *testing.T) {
	ids := memberIDs(3)
	short := map[string]ed25519.PublicKey{"1": testPub["1"], "2": testPub["2"][:31], "3": testPub["3"]}
	shared := map[string]ed25519.PublicKey{"1": testPub["1"], "2": testPub["1"], "3": testPub["3"]}
	missing := map[string]ed25519.PublicKey{"1": testPub["1"], "3": testPub["3"]}
	for name, keys := range map[string]map[string]ed25519.PublicKey{"short": short, "shared": shared, "missing": missing, "none": nil} {
		if _, err := ledger.NewGenesis(ids, 10, keys); !errors.Is(err, ledger.ErrBadGenesis) {
			t.Errorf("%s: err = %v, want ErrBadGenesis", name, err)
		}
	}
	g, err := ledger.NewGenesis(ids, 10, testPub)
	if err != nil {
		t.Fatal(err)
	}
	other := ledger.TestPubKeys(ids...)
	other["2"] = outsiderKey.Public().(ed25519.PublicKey)
	g2, err := ledger.NewGenesis(ids, 10, other)
	if err != nil {
		t.Fatal(err)
	}
	if g.Hash == g2.Hash {
		t.Fatal("the genesis hash does not bind the members' keys")
	}
	sealedGenesis := g
	sealedGenesis.Sig = ed25519.Sign(ledger.TestKey("1"), g.Hash[:])
	if _, err := ledger.NewChain(sealedGenesis); !errors.Is(err, ledger.ErrBadGenesis) {
		t.Fatalf("sealed genesis: err = %v", err)
	}
}

func TestNewNodeChecksSigner(t *testing.T) {
	ids := memberIDs(2)
	badHalves := slices.Clone(ledger.TestKey("1"))
	copy(badHalves[32:], testPub["2"]) // seed of 1, public key of 2
	for name, key := range map[string]ed25519.PrivateKey{
		"none": nil, "short": ledger.TestKey("1")[:40], "another member's": ledger.TestKey("2"),
		"outsider": outsiderKey, "mixed halves": badHalves,
	} {
		if _, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(ids, 0), Signer: key}); !errors.Is(err, ledger.ErrBadKey) {
			t.Errorf("%s: err = %v, want ErrBadKey", name, err)
		}
	}
	if _, err := ledger.NewGenesis(ids, 10, nil); !errors.Is(err, ledger.ErrBadGenesis) {
		t.Errorf("no keys: err = %v, want ErrBadGenesis", err)
	}
}

func TestDecodeRejectsBadSealLength(t *testing.T) {
	_, b := testBlocks(t)
	enc, _ := b.MarshalBinary()
	sigAt := len(enc) - ledger.SigSize - 1
	for _, n := range []byte{1, 32, 63, 65, 255} {
		mod := append(bytes.Clone(enc[:sigAt]), n)
		mod = append(mod, make([]byte, int(n))...)
		if _, err := ledger.DecodeBlock(mod); !errors.Is(err, ledger.ErrMalformedBlock) {
			t.Errorf("seal of %d bytes: err = %v", n, err)
		}
	}
	b.Sig = b.Sig[:10]
	if _, err := b.MarshalBinary(); !errors.Is(err, ledger.ErrMalformedBlock) {
		t.Errorf("encode seal of 10 bytes: err = %v", err)
	}
}

// Every way a block can fail its seal is refused by Chain.Append, with
// nothing appended; the valid variant of each goes in.
func TestChainAppendChecksSeals(t *testing.T) {
	c := newChain(t, memberIDs(3))
	g := c.Genesis()
	unsealed := makeRun(g, "2", "1", 3, 1, ledger.TestKey("2"))
	unsealed[2].Sig = nil
	mixed := makeRun(g, "2", "1", 1, 1, ledger.TestKey("2")) // 2's block, unsealed, then 3's, sealed
	mixed[0].Sig = nil
	mixed = append(mixed, makeRun(mixed[0], "3", "1", 1, 1, ledger.TestKey("3"))...)
	otherHash := makeRun(g, "2", "1", 2, 1, ledger.TestKey("2"))
	otherHash[1].Sig = ed25519.Sign(ledger.TestKey("2"), otherHash[0].Hash[:])
	cases := map[string]struct {
		blocks []ledger.Block
		want   error
		height uint64
	}{
		"forged by member":          {makeRun(g, "2", "1", 1, 1, ledger.TestKey("1")), ledger.ErrBadSignature, 1},
		"forged by outsider":        {makeRun(g, "2", "1", 1, 1, outsiderKey), ledger.ErrBadSignature, 1},
		"unsealed":                  {unsealed, ledger.ErrUnsealed, 1},
		"sealed by the next sender": {mixed, ledger.ErrUnsealed, 1},
		"seal over another hash":    {otherHash, ledger.ErrBadSignature, 2},
		"clock beyond MaxClock":     {makeRun(g, "2", "1", 1, 1<<63+1, ledger.TestKey("2")), ledger.ErrBadClock, 1},
	}
	for name, tc := range cases {
		err := c.Append(tc.blocks...)
		var be *ledger.BlockError
		if !errors.Is(err, tc.want) || !errors.As(err, &be) || be.Height != tc.height {
			t.Errorf("%s: err = %v, want %v at height %d", name, err, tc.want, tc.height)
		}
		if _, verr := ledger.VerifyBlocks(append([]ledger.Block{g}, tc.blocks...)); !errors.Is(verr, tc.want) {
			t.Errorf("%s: VerifyBlocks err = %v, want %v", name, verr, tc.want)
		}
		if c.Len() != 1 {
			t.Fatalf("%s: a refused batch changed the chain", name)
		}
	}
	// The same shapes, properly sealed, go in: a run of 2 sealed once, then
	// one of 3, at the largest valid clock.
	good := makeRun(g, "2", "1", 2, 1, ledger.TestKey("2"))
	good = append(good, makeRun(good[1], "3", "1", 1, 1<<63, ledger.TestKey("3"))...)
	if err := c.Append(good...); err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyChain(c); err != nil {
		t.Fatal(err)
	}
}

// rejectsRelease runs a payload through a fresh node "1" of members 1-3 as
// a release of peer from, and checks that it is refused with want and
// that nothing goes in.
func rejectsRelease(t *testing.T, from string, blocks []ledger.Block, want error) {
	t.Helper()
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 0), Signer: ledger.TestKey("1")})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	if err := n.SetLocker(&fakeLocker{c: newCluster(), id: "1"}); err != nil {
		t.Fatal(err)
	}
	payload, err := ledger.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.HandleRelease(from, payload); !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if h := n.Head().Height; h != 0 {
		t.Fatalf("refused release inserted blocks: head %d", h)
	}
}

// A release whose blocks are not sealed by the releasing member, alone
// and at the end, is refused, and nothing of it goes in.
func TestReleaseRefusesForgedOrUnsealed(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), ledger.DefaultInitialBalance, testPub)
	twoSeals := makeRun(g, "2", "1", 2, 1, ledger.TestKey("2"))
	twoSeals[0] = twoSeals[0].Seal(ledger.TestKey("2"))
	unsealed := makeRun(g, "2", "1", 3, 1, ledger.TestKey("2"))
	unsealed[2].Sig = nil
	cases := map[string]struct {
		from   string
		blocks []ledger.Block
		want   error
	}{
		"from 2 sealed by 1":                {"2", makeRun(g, "2", "1", 3, 1, ledger.TestKey("1")), ledger.ErrBadSignature},
		"from 2 sealed by 1, released by 1": {"1", makeRun(g, "2", "3", 1, 1, ledger.TestKey("1")), ledger.ErrNotOwner},
		"outsider":                          {"2", makeRun(g, "2", "1", 1, 1, outsiderKey), ledger.ErrBadSignature},
		"unsealed":                          {"2", unsealed, ledger.ErrUnsealed},
		"seal inside":                       {"2", twoSeals, ledger.ErrMalformedBlock},
		"clock beyond MaxClock":             {"2", makeRun(g, "2", "1", 1, 1<<63+1, ledger.TestKey("2")), ledger.ErrBadClock},
		"edited under the seal": {"2", func() []ledger.Block {
			r := makeRun(g, "2", "1", 3, 1, ledger.TestKey("2"))
			r[0].Transfer.Amount = 9
			rehashFrom(r, 0)
			return r
		}(), ledger.ErrBadSignature},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) { rejectsRelease(t, tc.from, tc.blocks, tc.want) })
	}
	// The honest variant goes in whole.
	n, _ := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 0), Signer: ledger.TestKey("1")})
	defer n.Close(context.Background())
	_ = n.SetLocker(&fakeLocker{c: newCluster(), id: "1"})
	p, _ := ledger.EncodeBatch(makeRun(g, "2", "1", 3, 1, ledger.TestKey("2")))
	if err := n.HandleRelease("2", p); err != nil {
		t.Fatal(err)
	}
	if h := n.Head().Height; h != 3 {
		t.Fatalf("head %d after a good release of 3 blocks", h)
	}
}

// A catch-up batch carrying a forged block (a peer's block of another
// member, sealed with the peer's own key) is refused; the genuine blocks
// for those heights, from another peer, then go in.
func TestCatchUpRefusesForged(t *testing.T) {
	defer goleak.VerifyNone(t)
	g, _ := ledger.NewGenesis(memberIDs(3), ledger.DefaultInitialBalance, testPub)
	genuine := makeRun(g, "2", "1", 2, 1, ledger.TestKey("2"))
	genuine = append(genuine, makeRun(genuine[1], "3", "1", 1, 2, ledger.TestKey("3"))...)
	forged := slices.Clone(genuine)
	forged[2] = makeRun(genuine[1], "3", "2", 1, 2, ledger.TestKey("2"))[0] // 3 pays 2, sealed by 2
	unsealed := slices.Clone(genuine)
	unsealed[1].Sig = nil // the run of 2 ends without its seal before 3's block

	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(memberIDs(3), 0), Signer: ledger.TestKey("1")})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	if err := n.SetLocker(newGapLocker("1")); err != nil {
		t.Fatal(err)
	}
	n.HandleMessage("2", catchUpBlocks(t, forged))
	n.HandleMessage("2", catchUpBlocks(t, unsealed))
	n.HandleMessage("2", catchUpBlocks(t, forged[2:])) // after a refusal: ahead of a gap, or refused
	n.HandleMessage("3", catchUpBlocks(t, genuine))    // handled after the others, in order
	if err := n.WaitHeight(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if got := n.Blocks(); got[3].Hash != genuine[2].Hash || got[1].Hash != genuine[0].Hash {
		t.Fatalf("chain %v, want the genuine blocks", got)
	}
	if b, _ := n.Balance("2"); b != ledger.DefaultInitialBalance-2 {
		t.Fatalf("balance of 2 is %d: a forged transfer went in", b)
	}
}

// relayLocker is a gapLocker that passes on what its node sends on the
// catch-up channel.
type relayLocker struct {
	*gapLocker
	sent chan []byte
}

func (l *relayLocker) Send(to string, payload []byte) error {
	l.sent <- payload
	return l.gapLocker.Send(to, payload)
}

// A node sends catch-up batches cut after a seal, even when a sealed run
// is longer than its own MaxBatch, so that the receiver can verify each
// batch alone; the receiver takes every block.
func TestCatchUpBatchesEndAtSeals(t *testing.T) {
	defer goleak.VerifyNone(t)
	ids := memberIDs(3)
	g, _ := ledger.NewGenesis(ids, ledger.DefaultInitialBalance, testPub)
	blocks := makeRun(g, "2", "1", 5, 1, ledger.TestKey("2")) // a batch of 5 blocks, longer than MaxBatch
	blocks = append(blocks, makeRun(blocks[4], "3", "1", 1, 2, ledger.TestKey("3"))...)
	blocks = append(blocks, makeRun(blocks[5], "1", "2", 3, 3, ledger.TestKey("1"))...)
	st, _ := ledger.NewMemStore(g)
	if err := st.Append(blocks...); err != nil {
		t.Fatal(err)
	}
	l := &relayLocker{gapLocker: newGapLocker("1"), sent: make(chan []byte, 16)}
	src, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(ids, 0), Signer: ledger.TestKey("1"), Store: st, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(context.Background())
	if err := src.SetLocker(l); err != nil {
		t.Fatal(err)
	}
	dst, err := ledger.NewUnwired(ledger.Config{ID: "2", Genesis: ledger.GenesisForTest(ids, 0), Signer: ledger.TestKey("2")})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(context.Background())
	if err := dst.SetLocker(newGapLocker("2")); err != nil {
		t.Fatal(err)
	}
	// dst's announcement of its head: magic 'S', version 2, op 1 (head),
	// round 0 (no answer wanted), height 0, the genesis hash as the head
	// and as the ledger's name.
	head := append([]byte{'S', 2, 1}, make([]byte, 16)...)
	src.HandleMessage("2", append(append(head, g.Hash[:]...), g.Hash[:]...))
	var sizes []int
	for _, want := range []int{5, 1, 3} {
		p := <-l.sent
		batch, err := ledger.DecodeBatch(p[3:])
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
		if len(batch) != want || !batch[len(batch)-1].Sealed() {
			t.Fatalf("catch-up batches of %v blocks, want 5, 1, 3, each ending at a seal", sizes)
		}
		dst.HandleMessage("1", p)
	}
	if err := dst.WaitHeight(context.Background(), uint64(len(blocks))); err != nil {
		t.Fatal(err)
	}
	if dst.Head().Hash != blocks[len(blocks)-1].Hash {
		t.Fatal("the receiver does not have the source's chain")
	}
}

// A node refuses a file in which someone without the keys edited a
// transfer and recomputed every hash after it (the store, which checks
// only links, opens it); with the seals also stripped, the edited blocks
// are never loaded.
func TestFileStoreDetectsRehashedEdit(t *testing.T) {
	ids := memberIDs(3)
	g, _ := ledger.NewGenesis(ids, ledger.DefaultInitialBalance, testPub)
	blocks := makeRun(g, "2", "1", 2, 1, ledger.TestKey("2"))
	blocks = append(blocks, makeRun(blocks[1], "3", "1", 2, 2, ledger.TestKey("3"))...)
	blocks = append(blocks, makeRun(blocks[3], "1", "2", 2, 3, ledger.TestKey("1"))...)
	open := func(t *testing.T, blocks []ledger.Block) (*ledger.Node, error) {
		path := filepath.Join(t.TempDir(), "edited.log")
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Append(blocks...); err != nil { // a Store checks links only
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{}); err != nil {
			t.Fatal(err)
		}
		n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(ids, 0), Signer: ledger.TestKey("1"), Store: s})
		if err != nil {
			_ = s.Close()
		}
		return n, err
	}
	for edit := range blocks {
		edited := slices.Clone(blocks)
		edited[edit].Transfer.Amount = 7
		rehashFrom(edited, edit)
		n, err := open(t, edited)
		var be *ledger.BlockError
		if !errors.As(err, &be) || !errors.Is(err, ledger.ErrBadSignature) {
			if n != nil {
				_ = n.Close(context.Background())
			}
			t.Fatalf("edit of block %d: err = %v, want a BlockError for a bad seal", edit+1, err)
		}
		if want := uint64(edit + 1 + (edit+1)%2); be.Height != want { // the seal of the edited run
			t.Fatalf("edit of block %d: reported at height %d, want %d", edit+1, be.Height, want)
		}

		for i := edit; i < len(edited); i++ {
			edited[i].Sig = nil
		}
		n, err = open(t, edited)
		if err == nil {
			got := n.Blocks()
			_ = n.Close(context.Background())
			if len(got) > edit+1 {
				t.Fatalf("edit of block %d, seals stripped: the edited block was loaded", edit+1)
			}
		} else if !errors.Is(err, ledger.ErrUnsealed) {
			t.Fatalf("edit of block %d, seals stripped: err = %v", edit+1, err)
		}
	}
}

// A crash that tears a batch's write leaves its first blocks without
// their seal: the store loads them, and the node opened on it cuts them,
// so that appends go on from the last seal.
func TestFileStoreCutsUnsealedTail(t *testing.T) {
	ids := memberIDs(2)
	g, _ := ledger.NewGenesis(ids, ledger.DefaultInitialBalance, testPub)
	first := makeRun(g, "1", "2", 2, 1, ledger.TestKey("1"))
	torn := makeRun(first[1], "2", "1", 3, 2, ledger.TestKey("2"))
	path := filepath.Join(t.TempDir(), "torn.log")
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(first...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	sealedEnd := info.Size()
	s, _ = ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err := s.Append(torn...); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut at each record boundary before the batch's seal, and inside
	// each record of the batch.
	cuts := []int64{sealedEnd}
	end := sealedEnd
	for _, b := range torn {
		enc, _ := b.MarshalBinary()
		cuts = append(cuts, end+5, end+int64(len(enc)))
		end += int64(len(enc)) + 12 // the record's length, checksums
		cuts = append(cuts, end)
	}
	if end != int64(len(full)) {
		t.Fatalf("records end at %d, file at %d", end, len(full))
	}
	for _, cut := range cuts[:len(cuts)-1] {
		if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(ids, 0), Signer: ledger.TestKey("1"), Store: s})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		got := n.Blocks()
		_ = n.Close(context.Background())
		if len(got) != 3 || got[2].Hash != first[1].Hash {
			t.Fatalf("cut at %d: %d blocks, want the genesis and the first batch", cut, len(got))
		}
		if size := fileSize(t, path); size != sealedEnd {
			t.Fatalf("cut at %d: the file has %d bytes, want %d", cut, size, sealedEnd)
		}
		s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{})
		if err != nil {
			t.Fatalf("cut at %d, reopened: %v", cut, err)
		}
		if err := s.Append(torn...); err != nil { // the file ends at the last seal
			t.Fatalf("cut at %d: append after the cut: %v", cut, err)
		}
		_ = s.Close()
		s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{})
		if err != nil {
			t.Fatalf("cut at %d, appended again: %v", cut, err)
		}
		if got, _ := loadAll(t, s); len(got) != 6 {
			t.Fatalf("cut at %d, appended again: %d blocks", cut, len(got))
		}
		_ = s.Close()
	}
}

// Group commit seals each batch once, at its end, with the holder's key.
func TestCommitSealsEachBatchOnce(t *testing.T) {
	_, nodes := newTestCluster(t, 2, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 { // 10 each way: no one runs short
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i%2]
			if _, err := n.Transfer(ctx, nodes[(i+1)%2].ID(), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	blocks := nodes[0].Blocks()
	if len(blocks) != 21 {
		t.Fatalf("%d blocks", len(blocks))
	}
	for i, b := range blocks[1:] {
		last := i+2 == len(blocks) || blocks[i+2].Clock != b.Clock // the batch's end: the next block has another grant
		if b.Sealed() != last {
			t.Fatalf("block %d (clock %d): sealed %v, end of its batch %v", b.Height, b.Clock, b.Sealed(), last)
		}
		if last && !ed25519.Verify(testPub[b.Transfer.From], b.Hash[:], b.Sig) {
			t.Fatalf("block %d: the seal does not verify under its sender's key", b.Height)
		}
	}
	if nodes[1].Head().Hash != nodes[0].Head().Hash {
		t.Fatal("heads differ")
	}
}

// A node far behind holds released blocks only up to MaxPending above its
// head and drops the newer ones; when that cuts a batch, its blocks before
// the cut wait, unsealed, for their seal instead of going in or failing the
// node, and they go in once catch-up brings the rest of their batch.
func TestPendingRunCutByTrimWaitsForItsSeal(t *testing.T) {
	defer goleak.VerifyNone(t)
	const balance, runLen = 1 << 20, 5
	ids := memberIDs(2)
	g, _ := ledger.NewGenesis(ids, balance, testPub)
	chain := []ledger.Block{g}
	var runs [][]ledger.Block
	for len(chain) <= 100+ledger.MaxPending+runLen {
		r := makeRun(chain[len(chain)-1], "2", "1", runLen, uint64(len(runs)+1), ledger.TestKey("2"))
		runs, chain = append(runs, r), append(chain, r...)
	}
	cut := uint64(ledger.MaxPending) // the last height kept in pending: the head is 0
	if cut%runLen == 0 {
		t.Fatalf("the cut at %d falls between batches: the test needs it inside one", cut)
	}
	lastSealed := cut - cut%runLen

	ctx, cancel := context.WithCancel(context.Background()) // ends the waits if the node fails
	defer cancel()
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Genesis: ledger.GenesisForTest(ids, balance), Signer: ledger.TestKey("1"),
		OnEvent: func(ev ledger.Event) {
			if ev.Kind == ledger.EventFailed {
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	if err := n.SetLocker(newGapLocker("1")); err != nil {
		t.Fatal(err)
	}
	for _, r := range runs[100/runLen:] { // the releases after a gap of 100 blocks
		payload, err := ledger.EncodeBatch(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.HandleRelease("2", payload); err != nil {
			t.Fatalf("release of blocks from %d: %v", r[0].Height, err)
		}
	}
	if k := ledger.PendingLen(n); k != int(cut-100) {
		t.Fatalf("%d blocks held, want heights 101 to %d", k, cut)
	}
	n.HandleMessage("2", catchUpBlocks(t, chain[1:101])) // fills the gap
	if err := n.WaitHeight(ctx, lastSealed); err != nil {
		t.Fatalf("%v; node: %v", err, n.Err())
	}
	if h := n.Head().Height; h != lastSealed {
		t.Fatalf("head %d, want %d: the blocks up to the last seal kept, no unsealed one", h, lastSealed)
	}
	if err := n.Err(); err != nil {
		t.Fatalf("node failed: %v", err)
	}
	n.HandleMessage("2", catchUpBlocks(t, chain[lastSealed+1:lastSealed+1+runLen])) // the cut batch, whole
	if err := n.WaitHeight(ctx, lastSealed+runLen); err != nil {
		t.Fatalf("%v; node: %v", err, n.Err())
	}
	if got, _ := n.Balance("1"); got != balance+int64(lastSealed)+runLen {
		t.Fatalf("balance of 1 is %d", got)
	}
}
