package ledger

import "hash/maphash"

// blockWindow is how many of the most recent blocks a Chain holds in
// memory; Chain.Block reports a miss for older heights, which a node then
// reads from its Store. A power of two, and a multiple of chunkLen.
const blockWindow = 4096

// chunkLen is how many slots one chunk of the block window holds. Chunks
// are allocated as the chain first grows into them, so a short chain
// costs little.
const chunkLen = 256

// slot is one block of the window, held compactly: member indexes for the
// parties, the seal in a fixed array. It holds no pointers, so the garbage
// collector does not scan the window.
type slot struct {
	prev, hash Hash
	clock      uint64
	id         TransferID
	amount     int64
	from, to   uint32 // indexes into the genesis accounts
	sealed     bool
	sig        [SigSize]byte
}

// blockRing holds the blocks at heights first..last, at most blockWindow
// of them, each at index height % blockWindow. first is 0 while it is
// empty (the genesis is never held in the ring).
type blockRing struct {
	chunks      [blockWindow / chunkLen]*[chunkLen]slot
	first, last uint64
}

// push stores the block at height h, which must be last+1 unless the ring
// is empty, and drops the oldest block when the window is full.
func (r *blockRing) push(h uint64, s slot) {
	if r.first != 0 && h != r.last+1 || h == 0 {
		panic("ledger: block window pushed out of order")
	}
	i := h % blockWindow
	c := &r.chunks[i/chunkLen]
	if *c == nil {
		*c = new([chunkLen]slot)
	}
	(*c)[i%chunkLen] = s
	if r.first == 0 {
		r.first = h
	}
	r.last = h
	if r.last-r.first >= blockWindow {
		r.first = r.last - blockWindow + 1
	}
}

// get returns the slot of height h, if the ring holds it.
func (r *blockRing) get(h uint64) (*slot, bool) {
	if r.first == 0 || h < r.first || h > r.last {
		return nil, false
	}
	i := h % blockWindow
	return &r.chunks[i/chunkLen][i%chunkLen], true
}

// IDWindow bounds the memory of transfer IDs: a block is refused
// (ErrDuplicateTransfer) if its transfer ID is among the last IDWindow
// transfer IDs of any member, that is, of the last IDWindow blocks that
// member sent. So a transfer retried with the same ID (TransferWithID) is
// recognised, and answered with its first outcome, while its sender has
// committed fewer than IDWindow transfers since; an ID older than that may
// be used again. The rule is part of a chain's validity, derived from the
// chain alone, and the same on every replica.
const IDWindow = 4096

// idEntry locates a transfer ID: the height of its block, its sender (a
// member index) and its place in the sender's sequence of transfers.
type idEntry struct {
	height uint64
	seq    uint64
	member uint32
}

// idWindows holds every member's last IDWindow transfer IDs: per member,
// a ring of IDs and their heights indexed by seq % IDWindow, and one
// idTable over all of them that names each ID's ring and place. IDs in
// the windows are unique (a block whose ID is in one is refused), so the
// index names exactly one entry per ID. Memory: at most members ×
// IDWindow entries, none with pointers.
type idWindows struct {
	rings [][]idRecord // per member; grows to IDWindow, then wraps
	next  []uint64     // per member: the seq of its next transfer
	index idTable
}

// idRecord is one ID of a member's window and the height of its block.
type idRecord struct {
	id     TransferID
	height uint64
}

func newIDWindows(members int) idWindows {
	return idWindows{rings: make([][]idRecord, members), next: make([]uint64, members), index: newIDTable()}
}

// live reports whether e is still in its member's window when that member's
// next transfer has sequence number next.
func (e idEntry) live(next uint64) bool { return e.seq+IDWindow >= next }

// lookup returns the entry of id if it is in a window.
func (w *idWindows) lookup(id TransferID) (idEntry, bool) {
	ref, ok := w.index.get(id, w.idAt)
	if !ok {
		return idEntry{}, false
	}
	// The window of member m holds seqs base..next-1, seq s at s % IDWindow.
	m, p := refPlace(ref)
	next := w.next[m]
	base := next - min(next, IDWindow)
	seq := base + (uint64(p)+IDWindow-base%IDWindow)%IDWindow
	return idEntry{height: w.rings[m][p].height, seq: seq, member: m}, true
}

// idAt returns the ID at the place that ref names.
func (w *idWindows) idAt(ref uint32) TransferID {
	m, p := refPlace(ref)
	return w.rings[m][p].id
}

// add records id as member m's next transfer, in the block at height,
// dropping m's oldest ID once its window is full. id must not be in any
// window.
func (w *idWindows) add(m uint32, id TransferID, height uint64) {
	seq := w.next[m]
	p := uint32(seq % IDWindow)
	ref := placeRef(m, p)
	if seq >= IDWindow {
		w.index.del(w.rings[m][p].id, ref)
		w.rings[m][p] = idRecord{id: id, height: height}
	} else {
		w.rings[m] = append(w.rings[m], idRecord{id: id, height: height})
	}
	w.index.put(id, ref)
	w.next[m] = seq + 1
}

// window calls fn for each ID in member m's window, oldest first, with the
// height of its block.
func (w *idWindows) window(m uint32, fn func(id TransferID, height uint64)) {
	next := w.next[m]
	for seq := next - min(next, IDWindow); seq < next; seq++ {
		r := w.rings[m][seq%IDWindow]
		fn(r.id, r.height)
	}
}

// A ref names the place of a transfer ID in the windows, member m's ring
// at index p, as m*IDWindow + p + 1; 0 marks an empty idSlot. It fits in
// 32 bits because a genesis has at most maxMembers members.
func placeRef(m, p uint32) uint32 { return m*IDWindow + p + 1 }

func refPlace(ref uint32) (m, p uint32) { return (ref - 1) / IDWindow, (ref - 1) % IDWindow }

// maxMembers bounds the members of a ledger: as many accounts as the
// largest block can encode, and few enough for a ref.
const maxMembers = (MaxBlockSize - headerSize) / minAccount

// idTable maps transfer IDs to their places: an open-addressing hash
// table with linear probing, whose deletions shift later entries back
// instead of leaving tombstones, so that its size follows the number of
// IDs it holds (at most members × IDWindow), however many pass through
// it. A slot is 8 bytes, the low 32 bits of the ID's hash and its ref,
// so that the table of a few members fits in a core's cache; the ID
// itself is read from its place when the hash bits match. The hash is
// seeded per table, so IDs that a peer chooses cannot be made to collide.
type idTable struct {
	seed  maphash.Seed
	slots []idSlot // a power of two, at least twice n
	n     int
}

type idSlot struct {
	h   uint32 // the low 32 bits of the ID's hash; its home is h & mask
	ref uint32 // 0: the slot is empty
}

func newIDTable() idTable { return idTable{seed: maphash.MakeSeed(), slots: make([]idSlot, 64)} }

func (t *idTable) hash(id TransferID) uint32 { return uint32(maphash.Bytes(t.seed, id[:])) }

// get returns the ref of id; idAt returns the ID at a ref's place.
func (t *idTable) get(id TransferID, idAt func(ref uint32) TransferID) (uint32, bool) {
	h := t.hash(id)
	mask := uint32(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s := t.slots[i]; {
		case s.ref == 0:
			return 0, false
		case s.h == h && idAt(s.ref) == id:
			return s.ref, true
		}
	}
}

// put adds id at place ref; id must not be in the table, and ref must
// not be 0.
func (t *idTable) put(id TransferID, ref uint32) {
	if ref == 0 {
		panic("ledger: idTable.put of an empty ref")
	}
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		t.slots, t.n = make([]idSlot, 2*len(old)), 0
		for _, s := range old {
			if s.ref != 0 {
				t.insert(s)
			}
		}
	}
	t.insert(idSlot{h: t.hash(id), ref: ref})
}

// insert puts s in the first empty slot from its home.
func (t *idTable) insert(s idSlot) {
	mask := uint32(len(t.slots) - 1)
	i := s.h & mask
	for t.slots[i].ref != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
	t.n++
}

// del removes id at place ref, if the table holds it there, and moves
// back the entries after it that probing would no longer reach.
func (t *idTable) del(id TransferID, ref uint32) {
	h := t.hash(id)
	mask := uint32(len(t.slots) - 1)
	i := h & mask
	for ; t.slots[i] != (idSlot{h: h, ref: ref}); i = (i + 1) & mask {
		if t.slots[i].ref == 0 {
			return
		}
	}
	for j := i; ; {
		j = (j + 1) & mask
		if t.slots[j].ref == 0 {
			break
		}
		k := t.slots[j].h & mask
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue // still reachable from its home
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = idSlot{}
	t.n--
}
