package ledger

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// The replica simulation's faults, drawn per seed: stores that fail,
// catch-up messages that the mutex refuses, and catch-up inboxes that are
// full when blocks arrive.
//
// A store fails as the Store contract allows and the FileStore does: a
// failed Append may leave a strict prefix of its blocks written (a short
// write: the batch's last block, which holds its seal, is not among them);
// a failed Sync leaves what was appended written but not durable; after
// either, the store refuses every later Append and Sync, until the node
// restarts on what a crash keeps of it. What the node must then do:
//   - a failed persist of blocks it received, or a failed Sync of the
//     background syncer, stops it (EventFailed wrapping the store's error);
//   - a failed Append of its own batch fails the batch's transfers and
//     releases the mutex with no payload;
//   - a failed Sync of its own batch under SyncBeforeRelease stops it and
//     keeps the mutex (keepMutex): the blocks may survive on its disk, and
//     no peer may build others at their heights before it restarts;
//   - no transfer reports success unless its block is in the node's chain
//     and covered by a Sync of its store that returned nil.
//
// A node that stopped is restarted at a random later step, as an operator
// would, with all its store holds (its process exited, its machine stayed
// up); the walk does not settle until it is.
//
// A catch-up message (Kind Data) is refused with ErrPeerBusy, queueing
// nothing, when it would take its link past busyAt bytes, as the
// transports refuse application data past half their queue's bound; a
// link that holds nothing takes any message, as a payload within
// MaxPayload always fits an empty queue. So a large blocks message may be
// refused while the small answer after it goes through. The mutex's own
// messages are never refused, and FIFO holds. During the walk, a blocks
// message finds its receiver's inbox full, one in fullEvery, as if the
// catch-up goroutine were far behind: the inbox's count for the sender is
// taken to be at its bound for that one message. The sync round's retry
// timer (reask) and the catch-up goroutine's (retryTick) fire at random
// steps while they run.
type simFaults struct {
	storeFaults int // store operations left to fail
	faultBudget int // storeFaults at the start, for the report
	busyAt      int // Data that would take a link past this many bytes is refused; 0 for never
	fullEvery   int // a blocks message finds the inbox full one in fullEvery; 0 for never
	tally       simTally

	// Broken drivers, which the walk must catch.
	releaseKept    bool // the committer releases a mutex its node kept after a failed sync
	hideSyncErr    bool // the syncer reports a failed Sync as done
	ignoreRoundErr bool // the committer appends after a failed sync round
}

// simTally counts what the faults did, to show that they happen.
type simTally struct {
	storeFaults, kept, busy, full, roundsFailed int
	retried                                     int // retry timer ticks that sent something
}

func (t *simTally) add(u simTally) {
	t.storeFaults += u.storeFaults
	t.kept += u.kept
	t.busy += u.busy
	t.full += u.full
	t.roundsFailed += u.roundsFailed
	t.retried += u.retried
}

// faultEvery: while a seed's budget lasts, one store operation in
// faultEvery fails.
const faultEvery = 8

// errSimStore is the simulated store's failure.
var errSimStore = errors.New("simulated store failure")

func newSimFaults(rng *rand.Rand) simFaults {
	f := simFaults{storeFaults: rng.IntN(3)}
	f.faultBudget = f.storeFaults
	if rng.IntN(2) == 0 {
		f.busyAt = 200 + rng.IntN(1000)
	}
	if rng.IntN(2) == 0 {
		f.fullEvery = 1 + rng.IntN(2)
	}
	return f
}

func (f simFaults) String() string {
	return fmt.Sprintf("store faults %d, busy at %d, inbox full 1/%d", f.faultBudget, f.busyAt, f.fullEvery)
}

// simStore is a peer's store's state beyond its MemStore, and the
// committer's around it; a restart clears it.
type simStore struct {
	storeErr   error // the store failed: it refuses every Append and Sync
	committing bool  // the committer is committing a batch
	kept       bool  // the node must keep the mutex until it restarts
}

// storeFault reports whether the next store operation fails.
func (s *replicaSim) storeFault() bool {
	if s.storeFaults == 0 || s.rng.IntN(faultEvery) != 0 {
		return false
	}
	s.storeFaults--
	s.tally.storeFaults++
	return true
}

// persist appends blocks to peer i's store, and syncs them under
// SyncBeforeRelease, as Node.do does.
func (s *replicaSim) persist(i int, blocks []Block) error {
	p := s.peers[i]
	if p.storeErr != nil {
		return p.storeErr
	}
	if s.storeFault() {
		if k := s.rng.IntN(len(blocks)); k > 0 {
			if err := p.st.Append(blocks[:k]...); err != nil {
				s.t.Fatal(err)
			}
		}
		p.storeErr = fmt.Errorf("%w: write blocks %d-%d", errSimStore, blocks[0].Height, blocks[len(blocks)-1].Height)
		return p.storeErr
	}
	if err := p.st.Append(blocks...); err != nil {
		return err
	}
	if s.durability == SyncBeforeRelease {
		if err := s.storeSync(i); err != nil {
			if p.committing {
				p.kept = true
				s.tally.kept++
			}
			return fmt.Errorf("%w: %w", errUnsynced, err)
		}
		p.synced = blocks[len(blocks)-1].Height
	}
	return nil
}

// storeSync syncs peer i's store, or fails.
func (s *replicaSim) storeSync(i int) error {
	p := s.peers[i]
	if p.storeErr == nil && s.storeFault() {
		p.storeErr = fmt.Errorf("%w: sync", errSimStore)
	}
	return p.storeErr
}

// keptHeight returns how much of peer i's store a crash keeps: what it
// synced after a power cut, everything after a crash of the process alone,
// or anything between; with exited, everything.
func (s *replicaSim) keptHeight(i int, exited bool) uint64 {
	p := s.peers[i]
	cp, blocks, err := p.st.Load()
	if err != nil {
		s.t.Fatal(err)
	}
	var head uint64
	switch {
	case len(blocks) > 0:
		head = blocks[len(blocks)-1].Height
	case cp != nil:
		head = cp.Height
	}
	if exited {
		return head
	}
	switch s.rng.IntN(3) {
	case 0:
		return p.synced
	case 1:
		return head
	}
	return p.synced + s.rng.Uint64N(head-p.synced+1)
}

// checkRelease checks peer i's release with payload: not after its own
// batch's Sync failed under SyncBeforeRelease, and in that mode only with
// blocks its store synced.
func (s *replicaSim) checkRelease(i int, payload []byte) {
	p := s.peers[i]
	if p.kept {
		s.faultf("%s releases the mutex after its batch's sync failed", p.id)
		return
	}
	if payload == nil || s.durability != SyncBeforeRelease {
		return
	}
	blocks, err := DecodeBatch(payload)
	if err != nil {
		s.faultf("%s releases with a bad payload: %v", p.id, err)
		return
	}
	if h := blocks[len(blocks)-1].Height; h > p.synced {
		s.faultf("%s releases block %d under SyncBeforeRelease, its store synced to %d", p.id, h, p.synced)
	}
}

// checkSuccess checks a success that peer i reported for block b: the
// node's chain shows b, and its store synced it.
func (s *replicaSim) checkSuccess(i int, b Block) {
	p := s.peers[i]
	if b.Height > p.synced {
		s.faultf("%s reports the success of block %d, its store synced to %d", p.id, b.Height, p.synced)
	}
	got, ok, err := p.r.block(b.Height)
	if err != nil || !ok || got.Hash != b.Hash {
		s.faultf("%s reports the success of block %d %s, which its chain does not show (head %d, %v)",
			p.id, b.Height, b.Hash.Short(), p.r.chain.Head().Height, err)
	}
}

// sendData sends payload from peer i to peer to as Mutex.Send does: it is
// refused with ErrPeerBusy, queueing nothing, while the link is full.
func (s *replicaSim) sendData(i int, to string, payload []byte) error {
	msg, err := s.peers[i].m.Data(to, payload)
	if err != nil {
		return err
	}
	if j := s.index(to); s.busyAt > 0 {
		queued := linkBytes(msg)
		for _, m := range s.links[i][j] {
			queued += linkBytes(m)
		}
		if len(s.links[i][j]) > 0 && queued > s.busyAt {
			s.tally.busy++
			return fmt.Errorf("%w: %s: %d bytes queued with it", lamportmutex.ErrPeerBusy, to, queued)
		}
	}
	s.send(i, []lamportmutex.Message{msg})
	return nil
}

// message hands a catch-up message to peer i's replica, as the Node's
// HandleMessage does; a blocks message may find the inbox full.
func (s *replicaSim) message(i int, msg lamportmutex.Message) error {
	r := s.peers[i].r
	if s.fullEvery > 0 {
		if m, err := decodeSync(msg.Payload); err == nil && m.op == opBlocks && s.rng.IntN(s.fullEvery) == 0 {
			s.tally.full++
			n := r.inCount[msg.From]
			r.inCount[msg.From] = MaxInboxMessages
			defer func() { r.inCount[msg.From] = n }()
		}
	}
	return r.message(msg.From, msg.Payload)
}

// linkBytes is what a message takes of its link's queue, about as the
// transports count it: its payload and a frame's header.
func linkBytes(m lamportmutex.Message) int { return 64 + len(m.Payload) }
