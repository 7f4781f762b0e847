package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Catch-up: how replicas that missed blocks get them, and why the next
// holder never appends to a chain shorter than a live peer's.
//
// Blocks normally travel with their holder's release, which every peer
// handles before the release takes effect there. That fails in one way
// only: a process dies. A peer that was down misses the releases sent to
// its dead incarnation, and a holder that dies after its release reached
// some peers leaves the others without its block. Both are preceded by a
// PeerUp (the restarted peer's, at everyone else; everyone's, at the
// restarted peer), so:
//
//   - On PeerUp, a node tells every peer its head (an announcement). A
//     peer that has more sends the missing blocks; each is verified against
//     the receiver's own chain, persisted and inserted, never overwriting.
//     So a restarted peer catches up at once, and so does a survivor that
//     missed the dead holder's block while another survivor has it.
//   - A node that has seen a PeerUp since its last sync round runs one
//     right after it is granted the mutex, before it builds a block: it
//     sends its head to every other peer with a round number, each peer
//     sends the blocks it has beyond it and then answers with its head, and
//     the node goes ahead only once every peer has answered with a head it
//     has too. No one else can append meanwhile: the node holds the mutex.
//
// A peer's answer is sent after the peer handled the question, so it
// reflects every block that reached the peer before the grant; the dead
// holder's block, if it reached anyone, is at that peer or, if the holder
// persisted it, at the holder's new incarnation. Messages travel FIFO per
// pair, so a peer's blocks arrive before its answer.

// Messenger is the application channel of the mutex: Send carries a
// payload to one peer's current incarnation, FIFO with the mutex's own
// messages, to that peer's Node.HandleMessage. *lamportmutex.Mutex
// satisfies it.
type Messenger interface {
	Send(ctx context.Context, to string, payload []byte) error
}

// catchup is a Node's state for the catch-up protocol.
type catchup struct {
	others []string      // every member but this node
	upGen  atomic.Uint64 // PeerUps seen; a sync round is due when it moved
	synced uint64        // upGen at the start of the last good round; the committer's

	// sentTo is, per peer, the height up to which this node has sent it
	// blocks since that peer's last PeerUp: they are on their way or there,
	// so they are not sent again. The sync goroutine's.
	sentTo map[string]uint64

	smu      sync.Mutex
	inbox    []inbound     // for the sync goroutine, in arrival order
	kick     chan struct{} // buffered 1: the inbox is not empty
	round    uint64        // the current round; 0 when none runs
	rounds   uint64        // rounds started, to number them
	answers  map[string]syncMsg
	progress chan struct{} // closed and replaced when an answer or a PeerUp comes

	stopSync chan struct{}
	syncDone chan struct{} // closed when the sync goroutine exits; nil before it starts
}

// inbound is a message, a PeerUp, or a request to announce the head, for
// the sync goroutine.
type inbound struct {
	from     string
	payload  []byte
	up       bool
	announce bool
}

func newCatchup(self string, members []string) catchup {
	return catchup{
		others: slices.DeleteFunc(slices.Clone(members), func(id string) bool { return id == self }),
		sentTo: make(map[string]uint64),
		// Round numbers start at random, so that an answer meant for an
		// earlier incarnation of this node is not taken for one of ours.
		rounds:   rand.Uint64() >> 1,
		kick:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		stopSync: make(chan struct{}),
	}
}

// HandleMessage handles a catch-up message from peer from: pass it as the
// mutex's OnMessage handler (Node.MutexConfig does). It only queues the
// message for the node's catch-up goroutine, so it never blocks.
func (n *Node) HandleMessage(from string, payload []byte) error {
	n.post(inbound{from: from, payload: payload})
	return nil
}

// HandlePeerUp notes that a new incarnation of peer came up: pass it as
// the mutex's OnPeerUp handler (Node.MutexConfig does). The node tells the
// peer its head, and syncs with every peer before it next builds a block.
func (n *Node) HandlePeerUp(peer string) {
	n.needSync()
	n.post(inbound{from: peer, up: true})
}

// needSync makes the next grant run a sync round, and a round in progress
// start again.
func (n *Node) needSync() {
	n.upGen.Add(1)
	n.smu.Lock()
	n.wakeRound()
	n.smu.Unlock()
}

// post queues in for the sync goroutine.
func (n *Node) post(in inbound) {
	n.smu.Lock()
	n.inbox = append(n.inbox, in)
	n.smu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// wakeRound wakes a committer waiting in a sync round. n.smu must be held.
func (n *Node) wakeRound() {
	close(n.progress)
	n.progress = make(chan struct{})
}

// startSync starts the goroutine that handles catch-up messages; Close
// stops it.
func (n *Node) startSync(m Messenger) {
	n.smu.Lock()
	n.syncDone = make(chan struct{})
	n.smu.Unlock()
	go n.syncLoop(m)
}

// stopSyncLoop stops the catch-up goroutine and waits for it.
func (n *Node) stopSyncLoop() {
	n.smu.Lock()
	done := n.syncDone
	n.smu.Unlock()
	close(n.stopSync)
	if done != nil {
		<-done
	}
}

func (n *Node) syncLoop(m Messenger) {
	defer close(n.syncDone)
	ctx := n.life // ends when Close begins: sends give up at once
	for {
		select {
		case <-n.stopSync:
			return
		case <-n.kick:
		}
		for {
			n.smu.Lock()
			batch := n.inbox
			n.inbox = nil
			n.smu.Unlock()
			if len(batch) == 0 {
				break
			}
			announce := false
			for _, in := range batch {
				if ctx.Err() != nil {
					return
				}
				if in.up || in.announce {
					// One announcement for every PeerUp in the batch: a
					// restarted node hears of all its peers at once.
					if in.up {
						delete(n.sentTo, in.from) // what we sent died with it
					}
					announce = true
					continue
				}
				if announce {
					n.announce(ctx, m)
					announce = false
				}
				n.handleInbound(ctx, m, in)
			}
			if announce {
				n.announce(ctx, m)
			}
		}
	}
}

// announce tells every peer our head, not only one that came up: a peer
// that has a block we lack (a dead holder's, say) sends it.
func (n *Node) announce(ctx context.Context, m Messenger) {
	head := n.Head()
	for _, p := range n.others {
		n.send(ctx, m, p, syncMsg{op: opHead, height: head.Height, hash: head.Hash})
	}
}

// handleInbound handles one catch-up message.
func (n *Node) handleInbound(ctx context.Context, m Messenger, in inbound) {
	msg, err := decodeSync(in.payload)
	if err != nil {
		n.log.Warn("ledger: dropped a malformed catch-up message", "from", in.from, "err", err)
		return
	}
	switch msg.op {
	case opHead:
		n.answerHead(ctx, m, in.from, msg)
	case opAnswer:
		n.smu.Lock()
		if _, dup := n.answers[in.from]; !dup && msg.round != 0 && msg.round == n.round {
			n.answers[in.from] = msg
			n.wakeRound()
		}
		n.smu.Unlock()
	case opBlocks:
		err := n.keys.verifySeals(msg.blocks) // before writeMu: a batch may hold many seals
		if err == nil {
			n.writeMu.Lock()
			if err = n.acceptable(in.from); err == nil {
				err = n.accept(in.from, msg.blocks, true)
			}
			n.writeMu.Unlock()
		}
		if err != nil {
			n.log.Error("ledger: catch-up blocks refused", "from", in.from, "err", err)
		}
	}
}

// answerHead handles a peer's head: it sends the peer every block it lacks
// and, for a sync round, answers with this node's head. A peer whose block
// at its head's height is not ours is refused: nothing is sent, and this
// node stops (ErrDiverged), naming both hashes.
func (n *Node) answerHead(ctx context.Context, m Messenger, from string, q syncMsg) {
	n.mu.RLock()
	head := n.chain.Head()
	var missing []Block
	var conflict error
	if q.height <= head.Height {
		own, _ := n.chain.Block(q.height)
		if own.Hash != q.hash {
			conflict = &ConflictError{Height: q.height, Ours: own.Hash, Theirs: q.hash, Peer: from}
		} else if start := max(q.height, n.sentTo[from]) + 1; start <= head.Height {
			missing = n.chain.blocks[start:] // immutable once appended; copied by encoding
		}
	}
	n.mu.RUnlock()
	if conflict != nil {
		_ = n.fail(conflict)
	}
	k := n.maxBatch
	for len(missing) > 0 {
		k = min(k, len(missing))
		cut := sealCut(missing, k) // each batch ends at a seal, so the peer can verify it alone
		payload, err := encodeSync(syncMsg{op: opBlocks, blocks: missing[:cut]})
		if err == nil {
			err = m.Send(ctx, from, payload)
		}
		if errors.Is(err, lamportmutex.ErrPayloadTooLarge) && k > 1 && sealCut(missing, k/2) < cut {
			k /= 2 // the transport's frames are smaller than a batch: send fewer blocks
			continue
		}
		if errors.Is(err, lamportmutex.ErrPayloadTooLarge) {
			// Not even one sealed run fits: say so, and answer anyway, so
			// that an asking holder fails its round at once instead of waiting.
			n.log.Error("ledger: a sealed run of blocks is larger than the transport carries", "to", from,
				"height", missing[0].Height, "err", err)
			break
		}
		if err != nil {
			n.logSendError(ctx, from, opBlocks, err)
			return
		}
		n.sentTo[from] = missing[cut-1].Height
		missing = missing[cut:]
	}
	if q.round != 0 {
		n.send(ctx, m, from, syncMsg{op: opAnswer, round: q.round, height: head.Height, hash: head.Hash})
	}
}

// send sends a catch-up message, logging why it could not. A peer that
// restarts meanwhile announces itself again, so nothing is retried here.
func (n *Node) send(ctx context.Context, m Messenger, to string, msg syncMsg) bool {
	payload, err := encodeSync(msg)
	if err == nil {
		err = m.Send(ctx, to, payload)
	}
	if err != nil {
		n.logSendError(ctx, to, msg.op, err)
		return false
	}
	return true
}

// logSendError logs a catch-up message that could not be sent: quietly if
// the node or the peer is going away, which a later PeerUp repairs.
func (n *Node) logSendError(ctx context.Context, to string, op syncOp, err error) {
	lvl := n.log.Warn
	if errors.Is(err, lamportmutex.ErrClosed) || errors.Is(err, lamportmutex.ErrPeerDown) || ctx.Err() != nil {
		lvl = n.log.Debug
	}
	lvl("ledger: catch-up message not sent", "to", to, "op", op.String(), "err", err)
}

// syncRound makes sure, while this node holds the mutex, that its chain
// has every block that any peer has, if a PeerUp came since the last
// round (see the comment at the top of this file). It waits for every
// peer's answer, up to ctx. It returns an error if a peer has blocks it did
// not send, and fails the node (ErrDiverged) if a peer's chain disagrees.
func (n *Node) syncRound(ctx context.Context, m Messenger) error {
	for {
		gen := n.upGen.Load()
		if gen == n.synced {
			return nil
		}
		start := time.Now()
		before := n.Head().Height
		n.smu.Lock()
		n.rounds++
		round := n.rounds
		n.round, n.answers = round, make(map[string]syncMsg, len(n.others))
		n.smu.Unlock()
		err := n.runRound(ctx, m, gen, round)
		n.smu.Lock()
		n.round, n.answers = 0, nil
		n.smu.Unlock()
		switch {
		case errors.Is(err, errPeerCameUp):
			continue
		case err != nil:
			return err
		}
		n.synced = gen
		n.log.Info("ledger: synced with every peer before appending", "round", round,
			"fetched", n.Head().Height-before, "took", time.Since(start))
		return nil
	}
}

// errPeerCameUp ends a round that a PeerUp made stale.
var errPeerCameUp = errors.New("a peer came up during the sync round")

func (n *Node) runRound(ctx context.Context, m Messenger, gen, round uint64) error {
	head := n.Head()
	q := syncMsg{op: opHead, round: round, height: head.Height, hash: head.Hash}
	payload, err := encodeSync(q)
	if err != nil {
		return err
	}
	for _, p := range n.others {
		// A peer not up yet is asked again when it comes up (the round
		// restarts), so ErrPeerDown is no failure.
		if err := m.Send(ctx, p, payload); err != nil && !errors.Is(err, lamportmutex.ErrPeerDown) {
			return fmt.Errorf("ledger: sync round: ask %s: %w", p, err)
		}
	}
	for {
		n.smu.Lock()
		answers, progress := maps.Clone(n.answers), n.progress
		complete := len(answers) == len(n.others)
		n.smu.Unlock()
		if n.upGen.Load() != gen {
			return errPeerCameUp
		}
		if err := n.Err(); err != nil {
			return fmt.Errorf("ledger: sync round: %w: %w", ErrDiverged, err)
		}
		if complete {
			return n.checkAnswers(answers) // a copy: later answers are not recorded
		}
		select {
		case <-progress:
		case <-ctx.Done():
			n.smu.Lock()
			var missing []string
			for _, p := range n.others {
				if _, ok := n.answers[p]; !ok {
					missing = append(missing, p)
				}
			}
			n.smu.Unlock()
			return fmt.Errorf("ledger: sync round: no answer from %v: %w", missing, ctx.Err())
		}
	}
}

// checkAnswers checks that this node has every peer's head.
func (n *Node) checkAnswers(answers map[string]syncMsg) error {
	n.mu.RLock()
	head := n.chain.Head()
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(answers)) {
		a := answers[p]
		if a.height > head.Height {
			errs = append(errs, fmt.Errorf("ledger: sync round: peer %s has height %d (%s) but this node is at %d after its blocks",
				p, a.height, a.hash.Short(), head.Height))
			continue
		}
		if own, _ := n.chain.Block(a.height); own.Hash != a.hash {
			n.mu.RUnlock()
			err := n.fail(&ConflictError{Height: a.height, Ours: own.Hash, Theirs: a.hash, Peer: p})
			n.mu.RLock()
			errs = append(errs, err)
		}
	}
	n.mu.RUnlock()
	return errors.Join(errs...)
}

// ConflictError reports two replicas whose chains hold different blocks at
// one height: another ledger, or a bug. Nothing is overwritten; the node
// that sees it stops (ErrDiverged).
type ConflictError struct {
	Height uint64 // the height at which the chains disagree
	Ours   Hash   // this node's block there (or the one it holds for it)
	Theirs Hash   // the peer's block there
	Peer   string // the peer
}

// Error names the height and both hashes.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("chains disagree at height %d: this node has block %s, peer %s has %s",
		e.Height, e.Ours.Short(), e.Peer, e.Theirs.Short())
}

// Is reports whether target is ErrInvalidBlock.
func (e *ConflictError) Is(target error) bool { return target == ErrInvalidBlock }
