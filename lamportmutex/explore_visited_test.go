package lamportmutex

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// visitedShardBits is how many bits of a state's second hash pick the
// shard of the visited set that holds its first hash.
const visitedShardBits = 16

// visitedSet is the explorer's set of visited states, in slots of 8 bytes
// filled between 53% and 80% (so 10 to 15 bytes a state): a state is named by two 64-bit hashes of its key (stateKeyer.hashes); the
// top visitedShardBits bits of the second pick one of 2^visitedShardBits
// open-addressing tables of uint64, which holds the first. Two states are
// taken as one when they agree in those 64+16 = 80 bits, so among n
// distinct states the chance that any one is taken for another, and left
// unexplored, is at most n(n-1)/2 / 2^80 (below 10^-6 for 10^9 states;
// see omissionBound). The tables grow one at a time, so growing costs one
// table's worth of memory, not the whole set's.
//
// It is safe for concurrent use: each table has its own lock.
type visitedSet struct {
	shards []visitedShard
	n      atomic.Int64 // states in the set
}

// visitedShard is one open-addressing table with linear probing. A slot
// holds a first hash, or 0 when empty; a first hash of 0 is stored as 1,
// which is accounted for in omissionBound by counting 2^64-1 values.
type visitedShard struct {
	mu    sync.Mutex
	slots []uint64
	used  int
}

// visitedLoadMax is the load at which a table grows, by half.
const visitedLoadMax = 0.8

func newVisitedSet() *visitedSet {
	return &visitedSet{shards: make([]visitedShard, 1<<visitedShardBits)}
}

// add inserts the state named by h1 and h2. It returns the number of
// states in the set after adding it, or 0 if it was there already.
func (s *visitedSet) add(h1, h2 uint64) int {
	if h1 == 0 {
		h1 = 1
	}
	sh := &s.shards[h2>>(64-visitedShardBits)]
	sh.mu.Lock()
	added := sh.add(h1)
	sh.mu.Unlock()
	if !added {
		return 0
	}
	return int(s.n.Add(1))
}

// len returns the number of states in the set.
func (s *visitedSet) len() int { return int(s.n.Load()) }

// bytes returns the memory the tables hold.
func (s *visitedSet) bytes() int {
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		total += 8 * len(sh.slots)
		sh.mu.Unlock()
	}
	return total
}

// omissionBound returns an upper bound on the probability that two of n
// distinct states agree in the 80 bits the set compares (so that one of
// them went unexplored), taking the hashes as uniformly random: a union
// bound over the pairs.
func omissionBound(n int) float64 {
	pairs := float64(n) * float64(n-1) / 2
	return pairs / ((math.Exp2(64) - 1) * math.Exp2(visitedShardBits))
}

// add inserts h (not 0) and reports whether it was new.
func (sh *visitedShard) add(h uint64) bool {
	if float64(sh.used+1) > visitedLoadMax*float64(len(sh.slots)) {
		sh.grow()
	}
	if !sh.insert(h) {
		return false
	}
	sh.used++
	return true
}

// insert puts h in its home slot or the first empty one after it,
// wrapping, unless it is there already; it reports whether it put it. The
// table must have an empty slot.
func (sh *visitedShard) insert(h uint64) bool {
	n := uint64(len(sh.slots))
	i, _ := bits.Mul64(h, n) // the home slot: h scaled to [0, n)
	for {
		switch sh.slots[i] {
		case 0:
			sh.slots[i] = h
			return true
		case h:
			return false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// grow moves the table into one half as large again (at least 8 slots).
func (sh *visitedShard) grow() {
	old := sh.slots
	sh.slots = make([]uint64, max(8, len(old)+len(old)/2))
	for _, h := range old {
		if h != 0 && !sh.insert(h) {
			panic("explorer: a hash twice in the visited set")
		}
	}
}

// TestVisitedSetAgreesWithAMap adds random hashes, many of them twice and
// many into one table (so that it grows and its probes wrap), and checks
// every answer and the count against a map.
func TestVisitedSetAgreesWithAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := newVisitedSet()
	want := make(map[[2]uint64]bool)
	var added [][2]uint64
	for i := range 200000 {
		var h [2]uint64
		switch {
		case i%5 == 0 && len(added) > 0:
			h = added[rng.IntN(len(added))] // again
		case i%3 == 0:
			h = [2]uint64{rng.Uint64(), 7} // one table
		case i%7 == 0:
			h = [2]uint64{rng.Uint64N(4), rng.Uint64()} // 0 among them
		default:
			h = [2]uint64{rng.Uint64(), rng.Uint64()}
		}
		if h[0] == 0 {
			h[0] = 1 // stored as 1: the same state for the set
		}
		isNew := !want[[2]uint64{h[0], h[1] >> (64 - visitedShardBits)}]
		if got := s.add(h[0], h[1]) != 0; got != isNew {
			t.Fatalf("add #%d %x: got new=%v, want %v", i, h, got, isNew)
		}
		want[[2]uint64{h[0], h[1] >> (64 - visitedShardBits)}] = true
		added = append(added, h)
	}
	if s.len() != len(want) {
		t.Fatalf("len %d, want %d", s.len(), len(want))
	}
	if got := s.add(0, 0) != 0; got != !want[[2]uint64{1, 0}] {
		t.Fatalf("add(0, 0) = %v, after (1, 0) was added: %v", got, want[[2]uint64{1, 0}])
	}
}

// TestOmissionBound: the bound is the pair count over 2^80, near enough.
func TestOmissionBound(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float64
	}{{1, 0}, {2, 1 / math.Exp2(80)}, {1 << 30, math.Exp2(59) / math.Exp2(80)}} {
		if got := omissionBound(c.n); math.Abs(got-c.want) > 1e-9*c.want {
			t.Errorf("omissionBound(%d) = %g, want %g", c.n, got, c.want)
		}
	}
}
