package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// cpFields is a checkpoint's body as fields, encoded by the tests
// independently of Chain.appendState.
type cpFields struct {
	magic   string
	version byte
	genesis Hash
	head    []byte
	members uint32
	bal     []int64
	windows [][]cpEntry
}

type cpEntry struct {
	id     TransferID
	height uint64
}

func (f cpFields) encode() []byte {
	b := append([]byte(f.magic), f.version)
	b = append(b, f.genesis[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.head)))
	b = append(b, f.head...)
	b = binary.BigEndian.AppendUint32(b, f.members)
	for _, v := range f.bal {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	for _, w := range f.windows {
		b = binary.BigEndian.AppendUint32(b, uint32(len(w)))
		for _, e := range w {
			b = append(b, e.id[:]...)
			b = binary.BigEndian.AppendUint64(b, e.height)
		}
	}
	return b
}

// fieldsOf returns c's checkpoint as fields.
func fieldsOf(t testing.TB, c *Chain) cpFields {
	t.Helper()
	f := cpFields{magic: checkpointMagic, version: checkpointVersion, genesis: c.genesis.Hash,
		members: uint32(len(c.members)), bal: append([]int64(nil), c.bal...), windows: make([][]cpEntry, len(c.members))}
	if c.head.Height == 0 {
		f.head = c.genesis.Hash[:]
	} else {
		var err error
		if f.head, err = c.head.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	}
	for m := range c.members {
		c.ids.window(uint32(m), func(id TransferID, h uint64) { f.windows[m] = append(f.windows[m], cpEntry{id, h}) })
	}
	return f
}

// nodeKey is the key of the node that writes the checkpoints in these
// tests.
var nodeKey = testKey("node")

func signed(body []byte) []byte {
	return append(append([]byte(nil), body...), ed25519.Sign(nodeKey, body)...)
}

func nodePub() ed25519.PublicKey { return nodeKey.Public().(ed25519.PublicKey) }

// A chain restored from its checkpoint at any height, then fed the blocks
// after it, is the chain built from genesis: at the genesis, within the
// first window, and after every member's ID window and the block window
// have wrapped. The checkpoint's layout is the documented one.
func TestCheckpointRestoreThenExtend(t *testing.T) {
	members := []string{"1", "2", "3"}
	g := richGenesis(t, members...)
	full, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	m := runMaker{rng: rand.New(rand.NewPCG(7, 8)), members: members, maxRun: 24}
	type restored struct {
		at uint64
		c  *Chain
	}
	var rs []restored
	take := func() {
		cp := full.checkpoint(nodeKey)
		if want := signed(fieldsOf(t, full).encode()); !bytes.Equal(cp, want) {
			t.Fatalf("checkpoint at %d does not have the documented layout", full.head.Height)
		}
		if len(cp) > full.checkpointSize() {
			t.Fatalf("checkpoint at %d: %d bytes, checkpointSize says %d", full.head.Height, len(cp), full.checkpointSize())
		}
		c, err := chainFromCheckpoint(g, nodePub(), cp)
		if err != nil {
			t.Fatalf("restore at %d: %v", full.head.Height, err)
		}
		if err := c.sameState(full); err != nil {
			t.Fatalf("restore at %d: %v", full.head.Height, err)
		}
		if again := c.checkpoint(nodeKey); !bytes.Equal(again, cp) {
			t.Fatalf("restore at %d: its checkpoint differs", full.head.Height)
		}
		if b, ok := c.Block(c.head.Height); !ok || b.Hash != full.head.Hash {
			t.Fatalf("restore at %d: head block %v, %v", full.head.Height, b, ok)
		}
		rs = append(rs, restored{full.head.Height, c})
	}
	take()
	targets := []uint64{1, 100, blockWindow + 1, 2 * IDWindow, 3*IDWindow + 500, 4*IDWindow + 100}
	for _, target := range targets {
		for full.head.Height < target {
			run := m.run(t, full, nil)
			if err := full.Append(run...); err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if err := r.c.Append(run...); err != nil {
					t.Fatalf("chain restored at %d, append at %d: %v", r.at, run[0].Height, err)
				}
			}
		}
		take()
	}
	if full.ids.next[0] < IDWindow || full.ids.next[1] < IDWindow || full.ids.next[2] < IDWindow {
		t.Fatalf("members sent %v transfers: the windows did not wrap", full.ids.next)
	}
	for _, r := range rs {
		if err := r.c.sameState(full); err != nil {
			t.Fatalf("chain restored at %d, then extended: %v", r.at, err)
		}
	}
}

// A restored chain refuses what the chain built from genesis refuses: a
// transfer ID in the windows, and pays what the balances allow.
func TestCheckpointKeepsRules(t *testing.T) {
	g := richGenesis(t, "1", "2")
	full, _ := NewChain(g)
	m := runMaker{rng: rand.New(rand.NewPCG(9, 10)), members: []string{"1", "2"}, maxRun: 4}
	blocks := m.grow(t, full, 50)
	c, err := chainFromCheckpoint(g, nodePub(), full.checkpoint(nodeKey))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Next(Transfer{ID: blocks[3].Transfer.ID, From: "2", To: "1", Amount: 1}, 1)
	if !errors.Is(err, ErrDuplicateTransfer) {
		t.Fatalf("an id in the restored window: err = %v", err)
	}
	bal, _ := c.Balance("1")
	if _, err := c.Next(Transfer{ID: NewTransferID(), From: "1", To: "2", Amount: bal + 1}, 1); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("more than the restored balance: err = %v", err)
	}
}

// Every damaged checkpoint is refused, with errBadCheckpoint, even when
// signed by the node's key: each rule the decoder checks, broken alone.
func TestCheckpointRejects(t *testing.T) {
	members := []string{"1", "2", "3"}
	g := richGenesis(t, members...)
	c, _ := NewChain(g)
	m := runMaker{rng: rand.New(rand.NewPCG(11, 12)), members: members, maxRun: 3}
	m.grow(t, c, 40)
	base := fieldsOf(t, c)
	if _, err := chainFromCheckpoint(g, nodePub(), signed(base.encode())); err != nil {
		t.Fatal(err)
	}
	other := richGenesis(t, "1", "2", "4")
	headOf := func(mut func(*Block)) []byte {
		b := c.head
		mut(&b)
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	clone := func(f cpFields) cpFields {
		f.bal = append([]int64(nil), f.bal...)
		w := make([][]cpEntry, len(f.windows))
		for i := range w {
			w[i] = append([]cpEntry(nil), f.windows[i]...)
		}
		f.windows = w
		return f
	}
	hm := c.index[c.head.Transfer.From] // the head's sender
	om := (hm + 1) % 3
	cases := map[string]func(*cpFields){
		"magic":         func(f *cpFields) { f.magic = "LLCQ" },
		"version":       func(f *cpFields) { f.version++ },
		"genesis":       func(f *cpFields) { f.genesis = other.Hash },
		"head hash":     func(f *cpFields) { f.head = headOf(func(b *Block) { b.Hash[0] ^= 1 }) },
		"head seal":     func(f *cpFields) { f.head = headOf(func(b *Block) { b.Sig = bytes.Clone(b.Sig); b.Sig[0] ^= 1 }) },
		"head unsealed": func(f *cpFields) { f.head = headOf(func(b *Block) { b.Sig = nil }) },
		"head garbage":  func(f *cpFields) { f.head = []byte{1, 2, 3} },
		"head as hash":  func(f *cpFields) { f.head = other.Hash[:] },
		"head too long": func(f *cpFields) { f.head = make([]byte, MaxBlockSize+1) },
		"members":       func(f *cpFields) { f.members++ },
		"sum":           func(f *cpFields) { f.bal[0]++ },
		"negative":      func(f *cpFields) { f.bal[0], f.bal[1] = -1, f.bal[1]+f.bal[0]+1 },
		"height order":  func(f *cpFields) { w := f.windows[hm]; w[0], w[1] = w[1], w[0] },
		"height beyond": func(f *cpFields) { w := f.windows[hm]; w[len(w)-1].height = c.head.Height + 1 },
		"height zero":   func(f *cpFields) { f.windows[hm][0].height = 0 },
		"height twice": func(f *cpFields) {
			h := f.windows[hm][len(f.windows[hm])-2].height
			var w []cpEntry
			for _, e := range f.windows[om] {
				if e.height < h {
					w = append(w, e)
				}
			}
			f.windows[om] = append(w, cpEntry{TransferID{0xee}, h})
		},
		"id twice":       func(f *cpFields) { f.windows[om][0].id = f.windows[hm][0].id },
		"head id absent": func(f *cpFields) { w := f.windows[hm]; f.windows[hm] = w[:len(w)-1] },
		"head id moved": func(f *cpFields) {
			w := f.windows[hm]
			f.windows[om] = append(f.windows[om], w[len(w)-1])
			f.windows[hm] = w[:len(w)-1]
		},
		"too many ids": func(f *cpFields) {
			f.windows[om] = make([]cpEntry, IDWindow+1)
			for i := range f.windows[om] {
				f.windows[om][i] = cpEntry{TransferID{byte(i), byte(i >> 8), 9}, uint64(i + 1)}
			}
		},
	}
	for name, mut := range cases {
		f := clone(base)
		mut(&f)
		if _, err := chainFromCheckpoint(g, nodePub(), signed(f.encode())); !errors.Is(err, errBadCheckpoint) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	good := signed(base.encode())
	for i := range len(good) {
		if _, err := chainFromCheckpoint(g, nodePub(), good[:i]); !errors.Is(err, errBadCheckpoint) {
			t.Fatalf("cut to %d bytes: err = %v", i, err)
		}
		if i < len(good)-SigSize {
			if _, err := chainFromCheckpoint(g, nodePub(), signed(good[:i])); !errors.Is(err, errBadCheckpoint) {
				t.Fatalf("body cut to %d bytes, signed: err = %v", i, err)
			}
		}
		bad := bytes.Clone(good)
		bad[i] ^= 0x10
		if _, err := chainFromCheckpoint(g, nodePub(), bad); !errors.Is(err, errBadCheckpoint) {
			t.Fatalf("byte %d changed: err = %v", i, err)
		}
	}
	if _, err := chainFromCheckpoint(g, nodePub(), signed(append(base.encode(), 0))); !errors.Is(err, errBadCheckpoint) {
		t.Errorf("trailing byte: err = %v", err)
	}
	otherKey := testKey("someone else")
	body := base.encode()
	if _, err := chainFromCheckpoint(g, nodePub(), append(body, ed25519.Sign(otherKey, body)...)); !errors.Is(err, errBadCheckpoint) {
		t.Errorf("signed by another key: err = %v", err)
	}
	if _, err := chainFromCheckpoint(other, nodePub(), good); !errors.Is(err, errBadCheckpoint) {
		t.Errorf("another ledger's genesis: err = %v", err)
	}
}

// A checkpoint of the genesis alone restores to the genesis, and must hold
// the genesis balances and no transfer IDs.
func TestCheckpointAtGenesis(t *testing.T) {
	g := richGenesis(t, "1", "2")
	c, _ := NewChain(g)
	base := fieldsOf(t, c)
	if r, err := chainFromCheckpoint(g, nodePub(), signed(base.encode())); err != nil || r.sameState(c) != nil {
		t.Fatalf("genesis checkpoint: %v", err)
	}
	moved := base
	moved.bal = []int64{base.bal[0] - 1, base.bal[1] + 1}
	ids := base
	ids.windows = [][]cpEntry{{}, {{TransferID{1}, 0}}}
	for name, f := range map[string]cpFields{"balances": moved, "ids": ids} {
		if _, err := chainFromCheckpoint(g, nodePub(), signed(f.encode())); !errors.Is(err, errBadCheckpoint) {
			t.Errorf("%s at the genesis: err = %v", name, err)
		}
	}
}

// FuzzCheckpoint: a checkpoint never makes the decoder panic, signed by
// the node's key or not, and what it accepts re-encodes to the same bytes
// (the encoding is canonical, so the restored state is the encoded one).
func FuzzCheckpoint(f *testing.F) {
	g := richGenesis(f, "1", "2", "3")
	c, _ := NewChain(g)
	f.Add(c.appendState(nil))
	m := runMaker{rng: rand.New(rand.NewPCG(13, 14)), members: []string{"1", "2", "3"}, maxRun: 3}
	m.grow(f, c, 5)
	f.Add(c.appendState(nil))
	m.grow(f, c, 30)
	f.Add(c.appendState(nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := chainFromCheckpoint(g, nodePub(), body); err == nil {
			t.Fatal("a checkpoint without the node's signature decoded")
		}
		r, err := chainFromCheckpoint(g, nodePub(), signed(body))
		if err != nil {
			if !errors.Is(err, errBadCheckpoint) {
				t.Fatalf("error %v does not wrap errBadCheckpoint", err)
			}
			return
		}
		if again := r.appendState(nil); !bytes.Equal(again, body) {
			t.Fatalf("decoded state re-encodes to other bytes:\n%x\n%x", body, again)
		}
	})
}

// A restart's path: a chain restored from a checkpoint, extended by the
// stream of blocks after it, is the chain built from genesis; a damaged
// block in the stream is reported at its height, and the chain keeps the
// sealed runs before it.
func TestCheckpointThenExtendStream(t *testing.T) {
	members := []string{"1", "2", "3"}
	g := richGenesis(t, members...)
	full, _ := NewChain(g)
	m := runMaker{rng: rand.New(rand.NewPCG(16, 17)), members: members, maxRun: 30}
	blocks := append([]Block{g}, m.grow(t, full, 1500)...)
	lastSeal := func(below uint64) uint64 { // the highest sealed height below below
		for h := below - 1; ; h-- {
			if blocks[h].Sealed() {
				return h
			}
		}
	}
	from := lastSeal(700)
	mid, err := newChainFrom(blocks[:from+1])
	if err != nil {
		t.Fatal(err)
	}
	cp := mid.checkpoint(nodeKey)
	c, err := chainFromCheckpoint(g, nodePub(), cp)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.extend(blockSeq(blocks[from+1:])); err != nil {
		t.Fatal(err)
	}
	if err := c.sameState(full); err != nil {
		t.Fatal(err)
	}
	bad := append([]Block(nil), blocks...)
	at := uint64(1200)
	bad[at].Transfer.Amount++
	c, _ = chainFromCheckpoint(g, nodePub(), cp)
	var be *BlockError
	if err := c.extend(blockSeq(bad[from+1:])); !errors.As(err, &be) || be.Height != at {
		t.Fatalf("block %d changed: err = %v", at, err)
	}
	if h := c.Head().Height; h != lastSeal(at) || c.Head().Hash != blocks[h].Hash {
		t.Fatalf("after the error the chain's head is %d, want the last seal before %d, %d", h, at, lastSeal(at))
	}
}
