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

// Bounds of the catch-up inbox, per peer: messages queued for the catch-up
// goroutine and not yet handled. A peer whose blocks messages would go
// beyond either bound has them dropped; the node asks for the blocks again
// once its inbox drains (an honest peer far ahead can send that much while
// this node's disk catches up). A peer whose other messages (heads,
// answers, fetches: small, and an honest peer sends few) would go beyond
// either bound is refused and quarantined. In all, the inbox holds at most
// (members-1) times the bounds.
const (
	MaxInboxMessages = 4096
	MaxInboxBytes    = 16 << 20
)

// catchup is a Node's state for the catch-up protocol.
type catchup struct {
	others []string      // every member but this node
	upGen  atomic.Uint64 // PeerUps seen; a sync round is due when it moved
	synced uint64        // upGen at the start of the last good round; the committer's

	// sentTo is, per peer, the height up to which this node has sent it
	// blocks since that peer's last PeerUp: they are on their way or there,
	// so an announcement does not have them sent again. The sync
	// goroutine's.
	sentTo map[string]uint64

	smu      sync.Mutex
	inbox    []inbound     // for the sync goroutine, in arrival order
	kick     chan struct{} // buffered 1: the inbox is not empty
	round    uint64        // the current round; 0 when none runs
	rounds   uint64        // rounds started, to number them
	answers  map[string]syncMsg
	progress chan struct{} // closed and replaced when an answer or a PeerUp comes

	// Per peer, keyed by member ids only (the mutex delivers from peers
	// only, and HandleMessage and HandlePeerUp check): the incarnations
	// seen (a count of PeerUps), the one barred (plus one; 0 for none),
	// the inbox's share, and a the mutex's Quarantine to make.
	epoch       map[string]uint64
	barred      map[string]uint64
	inCount     map[string]int
	inBytes     map[string]int
	quarantines map[string]quarantine
	refetchDue  bool // blocks were dropped: ask every peer for what follows the head

	stopSync chan struct{}
	syncDone chan struct{} // closed when the sync goroutine exits; nil before it starts
}

// quarantine is a the mutex's Quarantine for the sync goroutine to make, if
// the peer's incarnation is still epoch.
type quarantine struct {
	epoch uint64
	cause error
}

// inbound is a message, a PeerUp, or a request to announce the head, for
// the sync goroutine.
type inbound struct {
	from     string
	payload  []byte
	epoch    uint64 // the sender's incarnation count when it was queued
	up       bool
	announce bool
}

func newCatchup(self string, members []string) catchup {
	return catchup{
		others: slices.DeleteFunc(slices.Clone(members), func(id string) bool { return id == self }),
		sentTo: make(map[string]uint64),
		// Round numbers start at random, so that an answer meant for an
		// earlier incarnation of this node is not taken for one of ours.
		rounds:      rand.Uint64() >> 1,
		kick:        make(chan struct{}, 1),
		progress:    make(chan struct{}),
		epoch:       make(map[string]uint64),
		barred:      make(map[string]uint64),
		inCount:     make(map[string]int),
		inBytes:     make(map[string]int),
		quarantines: make(map[string]quarantine),
		stopSync:    make(chan struct{}),
	}
}

// handleMessage handles a catch-up message from peer from, the mutex's
// HandleMessage. It only queues the
// message for the node's catch-up goroutine, so it never blocks. A message
// from a quarantined incarnation is dropped. Beyond the inbox's bounds
// (MaxInboxMessages, MaxInboxBytes), a blocks message is dropped and the
// blocks fetched again later; any other message is refused: the error
// returned (a *PeerError) makes the mutex quarantine the peer.
func (n *Node) handleMessage(from string, payload []byte) error {
	if !n.members[from] || from == n.id {
		return nil
	}
	n.smu.Lock()
	if n.barredLocked(from, n.epoch[from]) {
		n.smu.Unlock()
		return nil
	}
	if n.inCount[from] >= MaxInboxMessages || n.inBytes[from]+len(payload) > MaxInboxBytes {
		count, size := n.inCount[from], n.inBytes[from]
		blocks := len(payload) > 2 && syncOp(payload[2]) == opBlocks
		if blocks {
			n.refetchDue = true
		}
		n.smu.Unlock()
		if blocks {
			n.log.Debug("ledger: catch-up inbox full; blocks dropped, to be fetched again", "from", from)
			return nil
		}
		return n.refuse(from, n.currentEpoch(from), "catch-up messages", fmt.Errorf("%w: %d messages of %d bytes queued, and %d more bytes",
			errInboxFull, count, size, len(payload)), false)
	}
	n.smu.Unlock()
	n.post(inbound{from: from, payload: payload})
	return nil
}

// errInboxFull: a peer sent more catch-up messages than the inbox holds.
var errInboxFull = errors.New("catch-up inbox full")

// handlePeerUp notes that a new incarnation of peer came up, the mutex's
// HandlePeerUp. The node tells the
// peer its head, and syncs with every peer before it next builds a block.
// A quarantined peer's new incarnation is heard again.
func (n *Node) handlePeerUp(peer string) {
	if !n.members[peer] || peer == n.id {
		return
	}
	n.emit(Event{Kind: EventPeerUp, From: peer})
	n.smu.Lock()
	n.epoch[peer]++
	n.smu.Unlock()
	n.needSync()
	n.post(inbound{from: peer, up: true})
}

// barredLocked reports whether incarnation epoch of peer is quarantined.
// n.smu must be held.
func (n *Node) barredLocked(peer string, epoch uint64) bool {
	b := n.barred[peer]
	return b != 0 && b-1 == epoch
}

// errQuarantined: input from an incarnation already quarantined.
var errQuarantined = errors.New("the peer is quarantined until it restarts")

// isBarred reports whether incarnation epoch of peer is quarantined.
func (n *Node) isBarred(peer string, epoch uint64) bool {
	n.smu.Lock()
	defer n.smu.Unlock()
	return n.barredLocked(peer, epoch)
}

// currentEpoch returns the incarnation count of peer.
func (n *Node) currentEpoch(peer string) uint64 {
	n.smu.Lock()
	defer n.smu.Unlock()
	return n.epoch[peer]
}

// bar drops what is queued and what comes from incarnation epoch of peer,
// and with report set has the sync goroutine make the
// the mutex's Quarantine for it. An incarnation already superseded is
// left alone: it is gone, and the new one has done nothing wrong.
func (n *Node) bar(peer string, epoch uint64, cause error, report bool) {
	n.smu.Lock()
	current := n.members[peer] && epoch == n.epoch[peer]
	if current {
		n.barred[peer] = epoch + 1
		if report {
			n.quarantines[peer] = quarantine{epoch: epoch, cause: cause}
		}
	}
	n.smu.Unlock()
	if current && report {
		n.kickSync()
	}
}

// refetch has the sync goroutine ask every peer for the blocks after the
// head once its inbox drains: blocks were dropped (beyond the window, or a
// full inbox), or a bad one refused.
func (n *Node) refetch() {
	n.smu.Lock()
	n.refetchDue = true
	n.smu.Unlock()
	n.kickSync()
}

// needSync makes the next grant run a sync round, and a round in progress
// start again.
func (n *Node) needSync() {
	n.upGen.Add(1)
	n.smu.Lock()
	n.wakeRound()
	n.smu.Unlock()
}

// post queues in for the sync goroutine, counting a message in its
// sender's share of the inbox.
func (n *Node) post(in inbound) {
	n.smu.Lock()
	in.epoch = n.epoch[in.from]
	if !in.up && !in.announce {
		n.inCount[in.from]++
		n.inBytes[in.from] += len(in.payload)
	}
	n.inbox = append(n.inbox, in)
	n.smu.Unlock()
	n.kickSync()
}

func (n *Node) kickSync() {
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
func (n *Node) startSync(m locker) {
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

func (n *Node) syncLoop(m locker) {
	defer close(n.syncDone)
	ctx := n.life // ends when Close begins: sends give up at once
	for {
		select {
		case <-n.stopSync:
			return
		case <-n.kick:
		}
		for {
			n.quarantineDue(m)
			n.smu.Lock()
			batch := n.inbox
			n.inbox = nil
			fetch := len(batch) == 0 && n.refetchDue
			if fetch {
				n.refetchDue = false
			}
			n.smu.Unlock()
			if fetch {
				n.fetch(ctx, m)
				continue
			}
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
				n.smu.Lock()
				n.inCount[in.from]--
				n.inBytes[in.from] -= len(in.payload)
				barred := n.barredLocked(in.from, in.epoch)
				n.smu.Unlock()
				if barred {
					continue
				}
				if announce {
					n.announce(ctx, m, opHead)
					announce = false
				}
				n.handleInbound(ctx, m, in)
				n.quarantineDue(m)
			}
			if announce {
				n.announce(ctx, m, opHead)
			}
		}
	}
}

// quarantineDue makes the the mutex's Quarantine calls that refusals asked
// for, for the incarnations still current.
func (n *Node) quarantineDue(m locker) {
	n.smu.Lock()
	if len(n.quarantines) == 0 {
		n.smu.Unlock()
		return
	}
	due := make(map[string]error, len(n.quarantines))
	for p, q := range n.quarantines {
		if q.epoch == n.epoch[p] {
			due[p] = q.cause
		}
		delete(n.quarantines, p)
	}
	n.smu.Unlock()
	for _, p := range slices.Sorted(maps.Keys(due)) {
		m.Quarantine(p, due[p])
	}
}

// announce tells every peer our head, not only one that came up: a peer
// that has a block we lack (a dead holder's, say) sends it. With opFetch,
// peers send every block after the head, also those they sent before.
func (n *Node) announce(ctx context.Context, m locker, op syncOp) {
	head := n.Head()
	for _, p := range n.others {
		n.send(ctx, m, p, syncMsg{op: op, genesis: n.genesisHash(), height: head.Height, hash: head.Hash})
	}
}

// fetch asks every peer again for the blocks after the head, after this
// node dropped some.
func (n *Node) fetch(ctx context.Context, m locker) {
	n.log.Debug("ledger: asking the peers again for blocks after the head", "head", n.Head().Height)
	n.announce(ctx, m, opFetch)
}

// handleInbound handles one catch-up message. Bad input is refused and its
// sender quarantined.
func (n *Node) handleInbound(ctx context.Context, m locker, in inbound) {
	msg, err := decodeSync(in.payload)
	if err != nil {
		_ = n.refuse(in.from, in.epoch, "catch-up message", err, true)
		return
	}
	if msg.op != opBlocks && msg.genesis != n.genesisHash() {
		_ = n.refuse(in.from, in.epoch, "catch-up message", fmt.Errorf("%w: the peer runs the ledger of genesis %s, this node %s",
			ErrGenesisMismatch, msg.genesis.Short(), n.genesisHash().Short()), true)
		return
	}
	switch msg.op {
	case opHead, opFetch:
		n.answerHead(ctx, m, in.from, in.epoch, msg)
	case opAnswer:
		n.takeAnswer(in.from, in.epoch, msg)
	case opBlocks:
		err := n.checkReceived(in.from, msg.blocks, true) // before writeMu: a batch may hold many seals
		n.writeMu.Lock()
		if n.acceptable(in.from) {
			if err != nil {
				_ = n.refuse(in.from, in.epoch, "catch-up blocks", err, true)
			} else {
				_ = n.accept(in.from, in.epoch, msg.blocks, true)
			}
		}
		n.writeMu.Unlock()
	}
}

// checkClaim checks a peer's claim that its chain has the block hash at
// height: false if this node has another block there. A claim beyond the
// head cannot be checked yet.
func (n *Node) checkClaim(height uint64, hash Hash) error {
	own, ok, err := n.block(height)
	if err != nil {
		_ = n.fail(err) // this node's own storage failed; the claim is no fault
		return nil
	}
	if ok && own.Hash != hash {
		return fmt.Errorf("%w: block %s at height %d, where this node has %s", errFalseHead, hash.Short(), height, own.Hash.Short())
	}
	return nil
}

// errFalseHead: a peer claims a head that is not in this node's chain.
// Only a pair of valid blocks proves a fork; a claim costs the claimant
// its session.
var errFalseHead = errors.New("claimed head is not in this node's chain")

// takeAnswer records a peer's answer to the current sync round, if it
// is one and its claim is not false.
func (n *Node) takeAnswer(from string, epoch uint64, msg syncMsg) {
	n.smu.Lock()
	current := msg.round != 0 && msg.round == n.round
	_, dup := n.answers[from]
	n.smu.Unlock()
	if !current || dup {
		return
	}
	if err := n.checkClaim(msg.height, msg.hash); err != nil {
		_ = n.refuse(from, epoch, "sync answer", err, true)
		return
	}
	n.smu.Lock()
	if msg.round == n.round {
		n.answers[from] = msg
		n.wakeRound()
	}
	n.smu.Unlock()
}

// answerHead handles a peer's head: it sends the peer every block it lacks
// and, for a sync round, answers with this node's head. A head that is not
// in this node's chain is a false claim: the peer is refused and
// quarantined, and nothing is sent. An announcement (round 0) has the
// blocks sent since the peer's last PeerUp skipped; a round or an opFetch
// has every block after the head sent.
func (n *Node) answerHead(ctx context.Context, m locker, from string, epoch uint64, q syncMsg) {
	if err := n.checkClaim(q.height, q.hash); err != nil {
		_ = n.refuse(from, epoch, q.op.String(), err, true)
		return
	}
	head := n.Head()
	start := head.Height + 1
	if q.height < head.Height { // q.height+1 cannot wrap
		start = q.height + 1
		if q.op == opHead && q.round == 0 {
			start = max(start, n.sentTo[from]+1)
		}
	}
chunks:
	for start <= head.Height {
		// A chunk read from the window or the store, cut after its last
		// seal: a sealed run is at most MaxBatch <= MaxReadBlocks blocks,
		// and start is always where a run begins.
		missing, err := n.readBlocks(start, min(head.Height, start+MaxReadBlocks-1))
		if err != nil {
			_ = n.fail(err)
			return
		}
		if cut := sealCut(missing, len(missing)); cut > 0 {
			missing = missing[:cut]
		}
		start = missing[len(missing)-1].Height + 1
		k := n.maxBatch
		for len(missing) > 0 {
			k = min(k, len(missing))
			cut := sealCut(missing, k) // each batch ends at a seal, so the peer can verify it alone
			payload, err := encodeSync(syncMsg{op: opBlocks, blocks: missing[:cut]})
			if err == nil {
				err = m.Send(from, payload)
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
				break chunks
			}
			if err != nil {
				n.logSendError(ctx, from, opBlocks, err)
				return
			}
			n.sentTo[from] = max(n.sentTo[from], missing[cut-1].Height)
			missing = missing[cut:]
		}
	}
	if q.op == opHead && q.round != 0 {
		n.send(ctx, m, from, syncMsg{op: opAnswer, genesis: n.genesisHash(), round: q.round, height: head.Height, hash: head.Hash})
	}
}

// send sends a catch-up message, logging why it could not. A peer that
// restarts meanwhile announces itself again, so nothing is retried here.
func (n *Node) send(ctx context.Context, m locker, to string, msg syncMsg) bool {
	payload, err := encodeSync(msg)
	if err == nil {
		err = m.Send(to, payload)
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
// not send (and asks for them again). A peer whose answer is not in this
// node's chain is refused and quarantined, and the round waits for its
// next incarnation, as for a restart.
func (n *Node) syncRound(ctx context.Context, m locker) error {
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

func (n *Node) runRound(ctx context.Context, m locker, gen, round uint64) error {
	head := n.Head()
	q := syncMsg{op: opHead, genesis: n.genesisHash(), round: round, height: head.Height, hash: head.Hash}
	payload, err := encodeSync(q)
	if err != nil {
		return err
	}
	for _, p := range n.others {
		// A peer not up yet is asked again when it comes up (the round
		// restarts), so ErrPeerDown is no failure.
		if err := m.Send(p, payload); err != nil && !errors.Is(err, lamportmutex.ErrPeerDown) {
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
			refused, err := n.checkAnswers(answers) // a copy: later answers are not recorded
			if len(refused) == 0 {
				return err
			}
			// A refused peer is quarantined: its next incarnation's PeerUp
			// starts the round again.
			n.smu.Lock()
			for _, p := range refused {
				delete(n.answers, p)
			}
			n.smu.Unlock()
			continue
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

// checkAnswers checks that this node has every peer's head. A peer whose
// head is not in this node's chain is refused (and returned); a peer ahead
// of this node after sending its blocks makes the round fail, and the
// blocks are asked for again.
func (n *Node) checkAnswers(answers map[string]syncMsg) (refused []string, err error) {
	head := n.Head()
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(answers)) {
		a := answers[p]
		if a.height > head.Height {
			errs = append(errs, fmt.Errorf("ledger: sync round: peer %s has height %d (%s) but this node is at %d after its blocks",
				p, a.height, a.hash.Short(), head.Height))
			continue
		}
		if cerr := n.checkClaim(a.height, a.hash); cerr != nil {
			_ = n.refuse(p, n.currentEpoch(p), "sync answer", cerr, true)
			refused = append(refused, p)
		}
	}
	if len(errs) > 0 {
		n.refetch()
	}
	return refused, errors.Join(errs...)
}

// genesisHash names this node's ledger in its catch-up messages.
func (n *Node) genesisHash() Hash { return n.genesis }
