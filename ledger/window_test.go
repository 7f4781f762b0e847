package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// richGenesis returns a genesis of members whose balances never run out
// in these tests.
func richGenesis(t testing.TB, members ...string) Block {
	t.Helper()
	g, err := NewGenesis(members, 1<<40, testPubKeys(members...))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// runMaker makes sealed runs of blocks: up to maxRun transfers of one
// sender, the last one sealed, so that long chains cost one signature per
// run.
type runMaker struct {
	rng     *rand.Rand
	members []string
	maxRun  int
}

// run drafts one run on c's head, with transfer IDs from id (random when
// id is nil), and returns its blocks; it does not append them.
func (m runMaker) run(t testing.TB, c *Chain, id func(from string) TransferID) []Block {
	t.Helper()
	from := m.members[m.rng.IntN(len(m.members))]
	d := c.draft()
	for range 1 + m.rng.IntN(m.maxRun) {
		to := m.members[m.rng.IntN(len(m.members))]
		if to == from {
			continue
		}
		tid := NewTransferID()
		if id != nil {
			tid = id(from)
		}
		if _, err := d.next(Transfer{ID: tid, From: from, To: to, Amount: 1 + m.rng.Int64N(3)}, d.head.Height); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.blocks) == 0 {
		return nil
	}
	d.seal(testKey(from))
	return d.blocks
}

// grow appends runs to c until its head is at least height, and returns
// the blocks appended.
func (m runMaker) grow(t testing.TB, c *Chain, height uint64) []Block {
	t.Helper()
	var all []Block
	for c.Head().Height < height {
		run := m.run(t, c, nil)
		if err := c.Append(run...); err != nil {
			t.Fatal(err)
		}
		all = append(all, run...)
	}
	return all
}

// The chain holds the genesis, the head and the last blockWindow blocks,
// each as it was appended, and reports every other height as missing.
func TestChainRecentWindow(t *testing.T) {
	g := richGenesis(t, "1", "2", "3")
	c, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	m := runMaker{rng: rand.New(rand.NewPCG(1, 2)), members: []string{"1", "2", "3"}, maxRun: 64}
	blocks := append([]Block{g}, m.grow(t, c, blockWindow+700)...)
	head := c.Head().Height
	for h := range head + 2 {
		got, ok := c.Block(h)
		want := h == 0 || h <= head && h+blockWindow > head
		if ok != want {
			t.Fatalf("Block(%d) of a chain at %d: held %v, want %v", h, head, ok, want)
		}
		if ok && (got.Hash != blocks[h].Hash || got.Transfer != blocks[h].Transfer || got.Prev != blocks[h].Prev ||
			got.Clock != blocks[h].Clock || !bytes.Equal(got.Sig, blocks[h].Sig) || got.Sealed() != blocks[h].Sealed()) {
			t.Fatalf("Block(%d) = %v, appended %v", h, got, blocks[h])
		}
	}
	for h := head; ; h-- {
		if b, _ := c.Block(h); b.Sealed() {
			b.Sig[0] ^= 1
			if again, _ := c.Block(h); !bytes.Equal(again.Sig, blocks[h].Sig) {
				t.Fatal("changing a returned seal changed the chain's")
			}
			break
		}
	}
}

// idModel is the transfer-ID rule as its documentation states it: an ID
// is refused while it is among the last IDWindow IDs some member sent.
type idModel map[string][]TransferID

func (m idModel) seen(id TransferID) bool {
	for _, ids := range m {
		for _, x := range ids[max(0, len(ids)-IDWindow):] {
			if x == id {
				return true
			}
		}
	}
	return false
}

// evicted returns an ID that has just left some member's window, if any.
func (m idModel) evicted(rng *rand.Rand) (TransferID, bool) {
	for _, ids := range m {
		if n := len(ids) - IDWindow; n > 0 {
			id := ids[n-1-rng.IntN(min(n, 3))]
			return id, !m.seen(id)
		}
	}
	return TransferID{}, false
}

// live returns an ID in some member's window, if any.
func (m idModel) live(rng *rand.Rand) (TransferID, bool) {
	for _, ids := range m {
		if len(ids) > 0 {
			w := ids[max(0, len(ids)-IDWindow):]
			if rng.IntN(2) == 0 {
				return w[0], true // the oldest, next to leave
			}
			return w[rng.IntN(len(w))], true
		}
	}
	return TransferID{}, false
}

// The chain and its drafts refuse exactly the transfer IDs that the
// documented rule refuses, at the window's edge, across members, and
// within one batch whose earlier blocks push an ID out of the window, in
// drafts short enough to be searched one by one and long enough to be
// indexed.
func TestTransferIDWindowMatchesModel(t *testing.T) {
	members := []string{"1", "2", "3"}
	c, err := NewChain(richGenesis(t, members...))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	model := idModel{}
	var refused, reused, indexed int
	for c.ids.next[0] < IDWindow+300 || c.ids.next[1] < IDWindow+300 {
		from := members[rng.IntN(2)] // "3" only receives, so "1" and "2" wrap
		to := members[2]
		d := c.draft()
		n := 1 + rng.IntN(16)
		if rng.IntN(4) == 0 {
			n = draftScan - 2 + rng.IntN(3*draftScan)
		}
		for range n {
			id, old := NewTransferID(), false
			switch r := rng.IntN(10); {
			case r == 0:
				id, old = model.live(rng)
			case r < 3:
				id, old = model.evicted(rng)
			}
			if !old {
				id = NewTransferID()
			}
			want := model.seen(id)
			_, err := d.next(Transfer{ID: id, From: from, To: to, Amount: 1}, 1)
			if got := errors.Is(err, ErrDuplicateTransfer); got != want || !got && err != nil {
				t.Fatalf("transfer %d of %s with id %s: err %v, the rule says refused=%v", len(model[from]), from, id, err, want)
			}
			if want {
				refused++
				continue
			}
			if old {
				reused++
			}
			model[from] = append(model[from], id)
		}
		if len(d.blocks) == 0 {
			continue
		}
		if d.byID != nil {
			indexed++
		}
		d.seal(testKey(from))
		if err := c.Append(d.blocks...); err != nil {
			t.Fatalf("append of a batch its draft took: %v", err)
		}
		for _, ids := range model {
			for _, id := range ids[max(0, len(ids)-IDWindow):] {
				if _, ok := c.TransferHeight(id); !ok {
					t.Fatalf("id %s in the window, but TransferHeight does not find it", id)
				}
			}
		}
	}
	if c.ids.index.n != 2*IDWindow {
		t.Fatalf("the ID index holds %d entries, want %d", c.ids.index.n, 2*IDWindow)
	}
	if indexed == 0 {
		t.Fatal("no draft grew long enough to index its transfer IDs")
	}
	if refused < 100 || reused < 100 {
		t.Fatalf("the walk refused %d and reused %d ids: too few to show the rule", refused, reused)
	}
}

// An ID leaves its sender's window after exactly IDWindow more transfers
// of that sender, and not by other members' transfers; while in it, it is
// refused to every member.
func TestTransferIDWindowEdge(t *testing.T) {
	c, err := NewChain(richGenesis(t, "1", "2", "3"))
	if err != nil {
		t.Fatal(err)
	}
	first := TransferID{1}
	send := func(from string, id TransferID) error {
		b, err := c.Next(Transfer{ID: id, From: from, To: "3", Amount: 1}, 1)
		if err != nil {
			return err
		}
		return c.Append(b.Seal(testKey(from)))
	}
	if err := send("1", first); err != nil {
		t.Fatal(err)
	}
	for range IDWindow {
		if err := send("2", NewTransferID()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range IDWindow - 1 {
		for _, from := range []string{"1", "2"} {
			b, err := c.Next(Transfer{ID: first, From: from, To: "3", Amount: 1}, 1)
			if !errors.Is(err, ErrDuplicateTransfer) {
				t.Fatalf("after %d more transfers of its sender, id reused by %s: %v, %v", i, from, b, err)
			}
		}
		if err := send("1", NewTransferID()); err != nil {
			t.Fatal(err)
		}
	}
	if h, ok := c.TransferHeight(first); !ok || h != 1 {
		t.Fatalf("TransferHeight(first) = %d, %v before it leaves the window", h, ok)
	}
	if err := send("1", NewTransferID()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TransferHeight(first); ok {
		t.Fatal("first is still found after IDWindow more transfers of its sender")
	}
	if err := send("2", first); err != nil {
		t.Fatalf("an id out of every window is refused: %v", err)
	}
}

// Within one draft, as within the chain, an ID leaves its sender's window
// after exactly IDWindow more transfers of that sender: a draft that long
// indexes its IDs, and Append of many sealed runs builds one.
func TestTransferIDWindowEdgeInOneDraft(t *testing.T) {
	c := mustChain(t, richGenesis(t, "1", "2"))
	first := TransferID{1}
	d := c.draft()
	next := func(id TransferID) error {
		if d.open == MaxBatch-1 {
			defer d.seal(testKey("1"))
		}
		_, err := d.next(Transfer{ID: id, From: "1", To: "2", Amount: 1}, 1)
		return err
	}
	if err := next(first); err != nil {
		t.Fatal(err)
	}
	for range IDWindow - 1 {
		if err := next(NewTransferID()); err != nil {
			t.Fatal(err)
		}
	}
	if err := next(first); !errors.Is(err, ErrDuplicateTransfer) {
		t.Fatalf("after IDWindow-1 more transfers of its sender in the draft, id reused: %v", err)
	}
	if err := next(NewTransferID()); err != nil {
		t.Fatal(err)
	}
	if err := next(first); err != nil {
		t.Fatalf("after IDWindow more transfers of its sender in the draft, id refused: %v", err)
	}
	d.seal(testKey("1"))
	if err := c.Append(d.blocks...); err != nil {
		t.Fatalf("append of %d blocks its draft took: %v", len(d.blocks), err)
	}
}

// verifyChain, fed one block at a time, reaches the state that Append
// reaches, and reports a damaged block at its height, an unsealed tail,
// an over-long unsealed run and the source's own error.
func TestVerifyChainStreams(t *testing.T) {
	members := []string{"1", "2", "3"}
	g := richGenesis(t, members...)
	c, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	m := runMaker{rng: rand.New(rand.NewPCG(5, 6)), members: members, maxRun: 40}
	blocks := append([]Block{g}, m.grow(t, c, 3000)...)
	got, err := verifyChain(blockSeq(blocks))
	if err != nil {
		t.Fatal(err)
	}
	if err := got.sameState(c); err != nil {
		t.Fatal(err)
	}
	for _, h := range []uint64{1, 1000, 2999} {
		bad := append([]Block(nil), blocks...)
		bad[h].Transfer.Amount++
		var be *BlockError
		if _, err := verifyChain(blockSeq(bad)); !errors.As(err, &be) || be.Height != h {
			t.Fatalf("block %d changed: err = %v", h, err)
		}
	}
	tail := len(blocks) - 1 // cut before a seal that covers an earlier block
	for blocks[tail-1].Sealed() {
		tail--
	}
	if _, err := verifyChain(blockSeq(blocks[:tail])); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("unsealed tail: err = %v", err)
	}
	boom := errors.New("disk on fire")
	failing := func(yield func(Block, error) bool) {
		for _, b := range blocks[:10] {
			if !yield(b, nil) {
				return
			}
		}
		yield(Block{}, boom)
	}
	if _, err := verifyChain(failing); !errors.Is(err, boom) {
		t.Fatalf("source error: err = %v", err)
	}
	if _, err := verifyChain(blockSeq(nil)); !errors.Is(err, ErrBadGenesis) {
		t.Fatalf("no blocks: err = %v", err)
	}
}

// A run of more than MaxBatch blocks under one seal is refused: no path
// by which blocks arrive carries more.
func TestOverlongRunRefused(t *testing.T) {
	c, err := NewChain(richGenesis(t, "1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.draft()
	for range MaxBatch {
		if _, err := d.next(Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: 1}, 1); err != nil {
			t.Fatal(err)
		}
	}
	_, err = d.next(Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: 1}, 1)
	var be *BlockError
	if !errors.Is(err, ErrUnsealed) || !errors.As(err, &be) || be.Height != MaxBatch+1 {
		t.Fatalf("block %d of one run: err = %v", MaxBatch+1, err)
	}
	d.seal(testKey("1"))
	if err := c.Append(d.blocks...); err != nil {
		t.Fatalf("a run of exactly MaxBatch blocks: %v", err)
	}
}

// idTable agrees with a Go map under random puts and deletes of a small
// key space, at every load up to its growth point and across its end
// (clusters wrap around in small tables); a delete names the place it
// expects, and removes nothing when the ID has another.
func TestIDTableMatchesMap(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 15))
		tab := newIDTable()
		model := map[TransferID]uint32{}
		at := map[uint32]TransferID{} // the IDs' places
		idAt := func(ref uint32) TransferID { return at[ref] }
		keys := 20 + rng.IntN(200)
		for step := range 5000 {
			id := TransferID{byte(rng.IntN(keys)), byte(seed)}
			ref, in := model[id]
			switch r := rng.IntN(6); {
			case r < 2 && in:
				tab.del(id, ref)
				delete(model, id)
				delete(at, ref)
			case r == 2 && in:
				tab.del(id, ref+1) // not its place: kept
			case !in:
				for ref = 0; ref == 0 || at[ref] != (TransferID{}); {
					ref = 1 + rng.Uint32N(1<<20)
				}
				tab.put(id, ref)
				model[id], at[ref] = ref, id
			}
			if tab.n != len(model) || 2*tab.n > len(tab.slots) {
				t.Fatalf("seed %d step %d: %d entries in %d slots, model has %d", seed, step, tab.n, len(tab.slots), len(model))
			}
			for k := range keys {
				id := TransferID{byte(k), byte(seed)}
				got, ok := tab.get(id, idAt)
				want, wok := model[id]
				if ok != wok || got != want {
					t.Fatalf("seed %d step %d: get(%d) = %v %v, want %v %v", seed, step, k, got, ok, want, wok)
				}
			}
		}
	}
}

// IDs whose hashes agree in the 32 bits a slot keeps are told apart by
// the ID at their places.
func TestIDTableHashCollision(t *testing.T) {
	tab := newIDTable()
	byHash := map[uint32]TransferID{}
	var a, b TransferID
	for {
		id := NewTransferID()
		h := tab.hash(id)
		if other, ok := byHash[h]; ok && other != id {
			a, b = other, id
			break
		}
		byHash[h] = id
	}
	at := map[uint32]TransferID{1: a, 2: b}
	idAt := func(ref uint32) TransferID { return at[ref] }
	tab.put(a, 1)
	if _, ok := tab.get(b, idAt); ok {
		t.Fatal("an ID with another's hash bits is found in the table that holds only the other")
	}
	tab.put(b, 2)
	if r, ok := tab.get(a, idAt); !ok || r != 1 {
		t.Fatalf("get(a) = %d %v, want 1", r, ok)
	}
	if r, ok := tab.get(b, idAt); !ok || r != 2 {
		t.Fatalf("get(b) = %d %v, want 2", r, ok)
	}
	tab.del(a, 1)
	if _, ok := tab.get(a, idAt); ok {
		t.Fatal("a deleted ID is found")
	}
	if r, ok := tab.get(b, idAt); !ok || r != 2 {
		t.Fatalf("after deleting a: get(b) = %d %v, want 2", r, ok)
	}
}

// Node.Verify re-derives the state from the store's blocks and reports a
// node whose state no longer follows from them.
func TestNodeVerifyComparesState(t *testing.T) {
	members := []string{"1", "2"}
	g := richGenesis(t, members...)
	st, err := NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	c := mustChain(t, g)
	m := runMaker{rng: rand.New(rand.NewPCG(18, 19)), members: members, maxRun: 5}
	if err := st.Append(m.grow(t, c, 30)...); err != nil {
		t.Fatal(err)
	}
	n, err := newNode(Config{ID: "1", Genesis: g, Signer: testKey("1"), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	if err := n.Verify(); err != nil {
		t.Fatal(err)
	}
	n.step.Lock()
	n.r.chain.bal[0]++
	n.r.chain.bal[1]--
	n.step.Unlock()
	if err := n.Verify(); err == nil {
		t.Fatal("a balance table that the blocks do not imply passed Verify")
	}
}

func mustChain(t testing.TB, g Block) *Chain {
	t.Helper()
	c, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A genesis has at most maxMembers members, so that every place in the
// ID windows has a 32-bit ref.
func TestGenesisMemberBound(t *testing.T) {
	if uint64(maxMembers)*IDWindow >= 1<<32-1 {
		t.Fatalf("maxMembers %d: refs overflow 32 bits", maxMembers)
	}
	if maxMembers != 23300 {
		t.Fatalf("maxMembers is %d; NewGenesis documents 23,300", maxMembers)
	}
	members := make([]string, maxMembers+1)
	for i := range members {
		members[i] = fmt.Sprintf("m%06d", i)
	}
	if _, err := NewGenesis(members, 1, nil); !errors.Is(err, ErrBadGenesis) {
		t.Fatalf("a genesis of %d members: err = %v", len(members), err)
	}
}
