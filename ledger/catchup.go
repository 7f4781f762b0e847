package ledger

import (
	"context"
	"errors"
	"fmt"
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
//     A peer whose answer does not come is asked again now and then: a
//     full transport queue may have refused its blocks and its answer.
//   - A full transport queue refuses catch-up messages (ErrPeerBusy), so
//     the repair itself can be lost. A node runs a retry timer (period
//     catchupRetry, doubling up to maxCatchupRetry while ticks send
//     something) while it knows it is behind (blocks wait ahead of a gap,
//     or a peer told it a head above its own) or owes a peer an
//     announcement. At a tick, a node that was behind at the last tick
//     too, its head unmoved since, fetches: it asks every peer for the
//     blocks after its head. A gap opened by releases from different
//     peers arriving out of order closes sooner, and costs nothing. A
//     node whose blocks or announcement to a peer were refused tells that
//     peer its head again at the next tick (a refused fetch is sent
//     again), so a peer that does not know it lacks blocks learns it.
//     What is sent again is a head, never blocks: blocks go only to a
//     peer that asks. A peer that claims a head it never sends costs at
//     most one fetch per maxCatchupRetry, until its next incarnation.
//
// A peer's answer is sent after the peer handled the question, so it
// reflects every block that reached the peer before the grant; the dead
// holder's block, if it reached anyone, is at that peer or, if the holder
// persisted it, at the holder's new incarnation. Messages travel FIFO per
// pair, so a peer's blocks arrive before its answer.

// Bounds of the catch-up inbox, per peer: messages queued for the catch-up
// goroutine and not yet handled. A peer whose blocks messages would go
// beyond either bound has them dropped; the node asks for the blocks again
// once its inbox drains (an honest peer far ahead can send that much while
// this node's disk catches up). A peer's other messages (heads, answers,
// fetches: small, and an honest peer sends few) are bounded apart, so that
// its blocks never crowd out its answer: one that would have more than
// maxInboxControl of them queued is refused and quarantined. In all, the
// inbox holds at most (members-1) times the bounds.
const (
	MaxInboxMessages = 4096
	MaxInboxBytes    = 16 << 20
	maxInboxControl  = 256 // of syncHeadLen bytes each
)

// catchupLoop is a Node's catch-up goroutine and its channels.
type catchupLoop struct {
	kick     chan struct{} // buffered 1: the inbox has work
	stopSync chan struct{}
	syncDone chan struct{} // closed when the goroutine exits; nil before it starts
}

// handleMessage handles a catch-up message from peer from, the mutex's
// HandleMessage. It only queues the message for the node's catch-up
// goroutine, so it never waits for the store. A message from a
// quarantined incarnation is dropped. Beyond the inbox's bounds
// (MaxInboxMessages, MaxInboxBytes), a blocks message is dropped and the
// blocks fetched again later; any other message is refused: the error
// returned (a *PeerError) makes the mutex quarantine the peer.
func (n *Node) handleMessage(from string, payload []byte) error {
	var err error
	n.run(func(r *replica) { err = r.message(from, payload) })
	return err
}

// handlePeerUp notes that a new incarnation of peer came up, the mutex's
// HandlePeerUp. The node tells the peer its head, and syncs with every
// peer before it next builds a block. A quarantined peer's new
// incarnation is heard again.
func (n *Node) handlePeerUp(peer string) {
	n.run(func(r *replica) { r.peerUp(peer) })
}

func (n *Node) kickSync() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// startSync starts the goroutine that handles catch-up messages; Close
// stops it.
func (n *Node) startSync() {
	n.syncDone = make(chan struct{})
	go n.syncLoop(n.syncDone)
}

// stopSyncLoop stops the catch-up goroutine and waits for it.
func (n *Node) stopSyncLoop() {
	close(n.stopSync)
	if n.syncDone != nil {
		<-n.syncDone
	}
}

// syncLoop is the catch-up goroutine: it handles the inbox when kicked,
// and runs the retry timer while the replica wants it (see retryTick),
// the period doubling each time a tick sends something and starting over
// once the node is neither behind nor owes an announcement.
func (n *Node) syncLoop(done chan struct{}) {
	defer close(done)
	ctx := n.life // ends when Close begins
	retry := time.NewTimer(catchupRetry)
	retry.Stop()
	defer retry.Stop()
	wait, armed := catchupRetry, false
	for {
		select {
		case <-n.stopSync:
			return
		case <-n.kick:
			if !n.drainInbox(ctx) {
				return
			}
		case <-retry.C:
			if ctx.Err() != nil {
				return
			}
			armed = false
			var sent bool
			n.run(func(r *replica) { sent = r.retryTick() })
			if sent {
				wait = min(2*wait, maxCatchupRetry)
			}
		}
		if armed {
			continue
		}
		var want bool
		n.run(func(r *replica) { want = r.retryWanted() })
		if !want {
			wait = catchupRetry
			continue
		}
		retry.Reset(wait)
		armed = true
	}
}

// Between catchupRetry and maxCatchupRetry: the period of the catch-up
// goroutine's retry timer (see retryTick), which runs while the node is
// behind or owes a peer an announcement, doubling each time the timer
// sends something.
const (
	catchupRetry    = 500 * time.Millisecond
	maxCatchupRetry = 30 * time.Second
)

// drainInbox handles what the catch-up inbox holds, and the fetches due,
// until it is empty. It returns false if the node is closing.
func (n *Node) drainInbox(ctx context.Context) bool {
	for {
		var batch []inbound
		var fetch bool
		n.run(func(r *replica) { batch, fetch = r.takeInbox() })
		if fetch {
			continue
		}
		if len(batch) == 0 {
			return true
		}
		announce := false
		for _, in := range batch {
			if ctx.Err() != nil {
				return false
			}
			if in.up {
				// One announcement for every PeerUp in the batch: a
				// restarted node hears of all its peers at once.
				n.run(func(r *replica) { r.dequeue(in) })
				announce = true
				continue
			}
			// Decoding and checking seals needs no state: done outside
			// the step.
			msg, decErr := decodeSync(in.payload)
			var checkErr error
			if decErr == nil && msg.op == opBlocks {
				checkErr = n.r.checkReceived(in.from, msg.blocks, true)
			}
			n.run(func(r *replica) {
				if !r.dequeue(in) {
					return
				}
				if announce {
					r.announce(opHead)
					announce = false
				}
				r.inbound(in, msg, decErr, checkErr)
			})
		}
		if announce {
			n.run(func(r *replica) { r.announce(opHead) })
		}
	}
}

// sendBlocks sends peer to the blocks from..to, read from the chain's
// window or the store, in opBlocks messages that each end at a seal, so
// that the peer can verify each alone. It runs outside the step. The
// error is the store's, or a *sendCut if the mutex refused a message (it
// is logged; see answerHead for the repair).
func (n *Node) sendBlocks(l locker, to string, start, end uint64) error {
	ctx := n.life
	for start <= end {
		// A chunk read from the window or the store, cut after its last
		// seal: a sealed run is at most MaxBatch <= MaxReadBlocks blocks,
		// and start is always where a run begins.
		missing, err := n.readBlocks(start, min(end, start+MaxReadBlocks-1))
		if err != nil {
			return err
		}
		if cut := sealCut(missing, len(missing)); cut > 0 {
			missing = missing[:cut]
		}
		start = missing[len(missing)-1].Height + 1
		k := n.r.maxBatch
		for len(missing) > 0 {
			k = min(k, len(missing))
			cut := sealCut(missing, k) // each batch ends at a seal
			payload, err := encodeSync(syncMsg{op: opBlocks, blocks: missing[:cut]})
			if err == nil {
				err = l.Send(to, payload)
			}
			if errors.Is(err, lamportmutex.ErrPayloadTooLarge) && k > 1 && sealCut(missing, k/2) < cut {
				k /= 2 // the transport's frames are smaller than a batch: send fewer blocks
				continue
			}
			if errors.Is(err, lamportmutex.ErrPayloadTooLarge) {
				// Not even one sealed run fits: say so, and answer anyway, so
				// that an asking holder fails its round at once instead of waiting.
				n.log.Error("ledger: a sealed run of blocks is larger than the transport carries", "to", to,
					"height", missing[0].Height, "err", err)
				return nil
			}
			if err != nil {
				n.logSendError(ctx, to, opBlocks, err)
				return &sendCut{at: missing[0].Height, err: err}
			}
			missing = missing[cut:]
		}
	}
	return nil
}

// sendCut: the mutex refused to send a peer the blocks from height at on,
// so the peer lacks them.
type sendCut struct {
	at  uint64
	err error
}

func (e *sendCut) Error() string { return fmt.Sprintf("blocks from %d not sent: %v", e.at, e.err) }
func (e *sendCut) Unwrap() error { return e.err }

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
// not send (and asks for them again).
func (n *Node) syncRound(ctx context.Context) error {
	for {
		var due bool
		var gen, before uint64
		start := time.Now()
		n.run(func(r *replica) {
			if due = r.roundDue(); due {
				before = r.chain.Head().Height
				gen = r.startRound()
			}
		})
		if !due {
			return nil
		}
		err := n.waitRound(ctx, gen)
		var round, after uint64
		n.run(func(r *replica) {
			round, after = r.round, r.chain.Head().Height
			r.endRound(gen, err == nil)
		})
		switch {
		case errors.Is(err, errPeerCameUp):
			continue
		case err != nil:
			return err
		}
		n.log.Info("ledger: synced with every peer before appending", "round", round,
			"fetched", after-before, "took", time.Since(start))
		return nil
	}
}

// Between roundRetry and maxRoundRetry: how long a sync round waits for
// its missing answers before it asks those peers again (see reask), the
// wait doubling each time.
const (
	roundRetry    = 500 * time.Millisecond
	maxRoundRetry = 30 * time.Second
)

// waitRound waits for the round started for gen to end, or ctx. Peers
// that have not answered are asked again now and then.
func (n *Node) waitRound(ctx context.Context, gen uint64) error {
	wait := roundRetry
	retry := time.NewTimer(wait)
	defer retry.Stop()
	for {
		var done bool
		var err error
		var progress chan struct{}
		n.run(func(r *replica) {
			done, err = r.roundResult(gen)
			progress = n.progress
		})
		if done {
			return err
		}
		select {
		case <-progress:
		case <-retry.C:
			n.run(func(r *replica) { r.reask() })
			wait = min(2*wait, maxRoundRetry)
			retry.Reset(wait)
		case <-ctx.Done():
			var missing []string
			n.run(func(r *replica) { missing = r.missingAnswers() })
			return fmt.Errorf("ledger: sync round: no answer from %v: %w", missing, ctx.Err())
		}
	}
}
