package ledger

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// catchupState is a replica's part of the catch-up protocol (see the
// comment at the top of catchup.go).
type catchupState struct {
	upGen  uint64 // PeerUps seen; a sync round is due when it moved
	synced uint64 // upGen at the start of the last good round

	// sentTo is, per peer, the height up to which this node has sent it
	// blocks since that peer's last PeerUp: they are on their way or there,
	// so an announcement does not have them sent again.
	sentTo map[string]uint64

	inbox      []inbound // for the catch-up goroutine, in arrival order
	round      uint64    // the current round; 0 when none runs
	rounds     uint64    // rounds started, to number them
	roundErr   error     // the current round could not ask a peer
	answers    map[string]syncMsg
	refetchDue bool // blocks were dropped: ask every peer for what follows the head

	// claims is, per peer, the head that its current incarnation last
	// told this node; owed is, per peer, an announcement to send it again
	// (opFetch for a fetch, else opHead): the transport refused a catch-up
	// message to it. See retryTick.
	claims map[string]uint64
	owed   map[string]syncOp
	// retryOn: the catch-up goroutine's retry timer runs, or is to be
	// started. lagSeen and lagHead: at the timer's last tick, this node
	// was behind, with that head.
	retryOn bool
	lagSeen bool
	lagHead uint64

	// Per peer, keyed by member ids only: the incarnations seen (a count
	// of PeerUps), the one barred (plus one; 0 for none), and the inbox's
	// share: blocks messages and their bytes, and other messages.
	epoch   map[string]uint64
	barred  map[string]uint64
	inCount map[string]int
	inBytes map[string]int
	inCtl   map[string]int
}

// inbound is a message or a PeerUp for the catch-up goroutine.
type inbound struct {
	from    string
	payload []byte
	epoch   uint64 // the sender's incarnation count when it was queued
	up      bool
}

func newCatchupState() catchupState {
	return catchupState{
		sentTo:  make(map[string]uint64),
		claims:  make(map[string]uint64),
		owed:    make(map[string]syncOp),
		epoch:   make(map[string]uint64),
		barred:  make(map[string]uint64),
		inCount: make(map[string]int),
		inBytes: make(map[string]int),
		inCtl:   make(map[string]int),
	}
}

// isBarred reports whether incarnation epoch of peer is quarantined.
func (r *replica) isBarred(peer string, epoch uint64) bool {
	b := r.barred[peer]
	return b != 0 && b-1 == epoch
}

// message queues a catch-up message from peer from for the catch-up
// goroutine (see Node.handleMessage). The error is the peer's refusal.
func (r *replica) message(from string, payload []byte) error {
	if !r.members[from] || from == r.id || r.isBarred(from, r.epoch[from]) {
		return nil
	}
	blocks := isBlocksMsg(payload)
	switch {
	case blocks && (r.inCount[from] >= MaxInboxMessages || r.inBytes[from]+len(payload) > MaxInboxBytes):
		r.log.Debug("ledger: catch-up inbox full; blocks dropped, to be fetched again", "from", from)
		r.refetch()
		return nil
	case !blocks && len(payload) != syncHeadLen:
		_, err := decodeSync(payload)
		return r.refuse(from, r.epoch[from], "catch-up message", err, false)
	case !blocks && r.inCtl[from] >= maxInboxControl:
		return r.refuse(from, r.epoch[from], "catch-up messages", fmt.Errorf("%w: %d heads, answers and fetches queued",
			errInboxFull, r.inCtl[from]), false)
	}
	if blocks {
		r.inCount[from]++
		r.inBytes[from] += len(payload)
	} else {
		r.inCtl[from]++
	}
	r.inbox = append(r.inbox, inbound{from: from, payload: payload, epoch: r.epoch[from]})
	r.do(action{kind: actKickCatchup})
	return nil
}

// errInboxFull: a peer sent more catch-up messages than the inbox holds.
var errInboxFull = errors.New("catch-up inbox full")

// isBlocksMsg reports whether a catch-up message says it carries blocks
// (opBlocks), which the inbox bounds apart from the others.
func isBlocksMsg(payload []byte) bool {
	return len(payload) > 2 && syncOp(payload[2]) == opBlocks
}

// peerUp notes that a new incarnation of peer came up: the node tells the
// peer its head, and syncs with every peer before it next builds a block.
// A quarantined peer's new incarnation is heard again.
func (r *replica) peerUp(peer string) {
	if !r.members[peer] || peer == r.id {
		return
	}
	r.emit(Event{Kind: EventPeerUp, From: peer})
	r.epoch[peer]++
	r.dropPendingFrom(peer)
	delete(r.claims, peer) // the dead incarnation may have lost blocks it claimed
	delete(r.owed, peer)   // every peer is told the head again
	r.upGen++
	r.do(action{kind: actWakeRound})
	r.inbox = append(r.inbox, inbound{from: peer, up: true, epoch: r.epoch[peer]})
	r.do(action{kind: actKickCatchup})
}

// dropPendingFrom drops the blocks held ahead of a gap that peer's earlier
// incarnations sent. Until the gap fills they are in no chain, so no sync
// round sees them; their sender may have lost them with its unsynced tail
// and, once granted, built other blocks at their heights. A block that
// some live peer's chain holds comes again by catch-up.
func (r *replica) dropPendingFrom(peer string) {
	for h, p := range r.pending {
		if p.from == peer {
			delete(r.pending, h)
		}
	}
}

// peerDown reports that the transport lost peer.
func (r *replica) peerDown(peer string) {
	if r.members[peer] && peer != r.id {
		r.emit(Event{Kind: EventPeerDown, From: peer})
	}
}

// refetch has the catch-up goroutine ask every peer for the blocks after
// the head once its inbox drains: blocks were dropped (beyond the window,
// or a full inbox), or a bad one refused.
func (r *replica) refetch() {
	r.refetchDue = true
	r.do(action{kind: actKickCatchup})
}

// takeInbox returns what the catch-up goroutine is to handle next: the
// queued messages and PeerUps, or, with none queued and a refetch due, an
// empty batch and fetch set, the opFetch announcement already queued.
func (r *replica) takeInbox() (batch []inbound, fetch bool) {
	batch, r.inbox = r.inbox, nil
	if len(batch) == 0 && r.refetchDue {
		r.refetchDue = false
		r.log.Debug("ledger: asking the peers again for blocks after the head", "head", r.chain.Head().Height)
		r.announce(opFetch)
		return nil, true
	}
	return batch, false
}

// dequeue takes in off its sender's share of the inbox, and reports
// whether it is still to be handled (its incarnation is not barred). A
// PeerUp forgets what was sent to the peer's dead incarnation.
func (r *replica) dequeue(in inbound) bool {
	if in.up {
		delete(r.sentTo, in.from)
		return true
	}
	if isBlocksMsg(in.payload) {
		r.inCount[in.from]--
		r.inBytes[in.from] -= len(in.payload)
	} else {
		r.inCtl[in.from]--
	}
	return !r.isBarred(in.from, in.epoch)
}

// announce tells every peer our head, not only one that came up: a peer
// that has a block we lack (a dead holder's, say) sends it. With opFetch,
// peers send every block after the head, also those they sent before.
func (r *replica) announce(op syncOp) {
	for _, p := range r.others {
		r.announceTo(p, op)
	}
}

// announceTo tells peer p our head with op (opHead or opFetch). If the
// transport refuses it (ErrPeerBusy), it is owed: sent again when the
// retry timer fires.
func (r *replica) announceTo(p string, op syncOp) {
	head := r.chain.Head()
	r.send(p, syncMsg{op: op, genesis: r.genesis, height: head.Height, hash: head.Hash}, func(err error) {
		if errors.Is(err, lamportmutex.ErrPeerBusy) {
			r.owe(p, op)
		}
	})
}

// owe notes that peer p is to be told our head again, with op; a fetch
// owed stays one.
func (r *replica) owe(p string, op syncOp) {
	if r.owed[p] != opFetch {
		r.owed[p] = op
	}
	r.lagged()
}

// claim notes the head that incarnation epoch of peer told this node.
func (r *replica) claim(peer string, epoch, height uint64) {
	if epoch != r.epoch[peer] {
		return
	}
	r.claims[peer] = height
	if height > r.chain.Head().Height {
		r.lagged()
	}
}

// behind reports whether this node knows that it lacks blocks: some wait
// ahead of a gap, or a peer told it a head above its own.
func (r *replica) behind() bool {
	if len(r.pending) > 0 {
		return true
	}
	head := r.chain.Head().Height
	for _, h := range r.claims {
		if h > head {
			return true
		}
	}
	return false
}

// lagged has the catch-up goroutine start its retry timer, unless it runs:
// this node may be behind, or owes a peer an announcement.
func (r *replica) lagged() {
	if !r.retryOn {
		r.retryOn = true
		r.do(action{kind: actKickCatchup})
	}
}

// retryWanted reports whether the catch-up goroutine's retry timer is to
// run: this node is behind, or owes a peer an announcement. The goroutine
// asks after each wake-up.
func (r *replica) retryWanted() bool {
	r.retryOn = len(r.owed) > 0 || r.behind()
	if !r.retryOn {
		r.lagSeen = false
	}
	return r.retryOn
}

// retryTick is the catch-up goroutine's retry timer firing. Every owed
// announcement is sent again. A node that was behind at the last tick and
// is still, its head unmoved since, asks every peer for the blocks after
// its head (refetch): a gap that lasts a whole period is no longer the
// transient one that releases from different peers arriving out of order
// make. It reports whether it sent anything (the goroutine then waits
// longer before the next tick).
func (r *replica) retryTick() (sent bool) {
	for _, p := range r.others {
		if op, ok := r.owed[p]; ok {
			delete(r.owed, p)
			r.announceTo(p, op)
			sent = true
		}
	}
	head, behind := r.chain.Head().Height, r.behind()
	if behind && r.lagSeen && r.lagHead == head {
		r.log.Debug("ledger: behind for a while; asking the peers again for blocks after the head", "head", head)
		r.refetch()
		sent = true
	}
	r.lagSeen, r.lagHead = behind, head
	return sent
}

// send queues a catch-up message; then, if set, gets the Send's error.
func (r *replica) send(to string, msg syncMsg, then func(error)) {
	payload, err := encodeSync(msg)
	if err != nil { // cannot happen: only opBlocks messages grow
		panic(fmt.Sprintf("ledger: encode a catch-up message: %v", err))
	}
	r.do(action{kind: actSend, peer: to, op: msg.op, payload: payload, then: then})
}

// inbound handles one catch-up message from in, which the goroutine
// decoded: msg, or decErr; for opBlocks, checkErr is what checkReceived
// found. Bad input is refused and its sender quarantined.
func (r *replica) inbound(in inbound, msg syncMsg, decErr, checkErr error) {
	switch {
	case decErr != nil:
		_ = r.refuse(in.from, in.epoch, "catch-up message", decErr, true)
		return
	case msg.op != opBlocks && msg.genesis != r.genesis:
		_ = r.refuse(in.from, in.epoch, "catch-up message", fmt.Errorf("%w: the peer runs the ledger of genesis %s, this node %s",
			ErrGenesisMismatch, msg.genesis.Short(), r.genesis.Short()), true)
		return
	}
	switch msg.op {
	case opHead, opFetch:
		r.answerHead(in.from, in.epoch, msg)
	case opAnswer:
		r.takeAnswer(in.from, in.epoch, msg)
	case opBlocks:
		if !r.acceptable(in.from) {
			return
		}
		if checkErr != nil {
			_ = r.refuse(in.from, in.epoch, "catch-up blocks", checkErr, true)
			return
		}
		var verdict error
		r.accept(in.from, in.epoch, msg.blocks, true, &verdict)
	}
}

// checkClaim checks a peer's claim that its chain has the block hash at
// height: false if this node has another block there. A claim beyond the
// head cannot be checked yet.
func (r *replica) checkClaim(height uint64, hash Hash) error {
	own, ok, err := r.block(height)
	if err != nil {
		_ = r.fail(err) // this node's own storage failed; the claim is no fault
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
func (r *replica) takeAnswer(from string, epoch uint64, msg syncMsg) {
	if _, dup := r.answers[from]; msg.round == 0 || msg.round != r.round || dup {
		return
	}
	if err := r.checkClaim(msg.height, msg.hash); err != nil {
		_ = r.refuse(from, epoch, "sync answer", err, true)
		return
	}
	r.answers[from] = msg
	r.claim(from, epoch, msg.height)
	r.do(action{kind: actWakeRound})
}

// answerHead handles a peer's head: it sends the peer every block it lacks
// and, for a sync round, answers with this node's head. A head that is not
// in this node's chain is a false claim: the peer is refused and
// quarantined, and nothing is sent. An announcement (round 0) has the
// blocks sent since the peer's last PeerUp skipped; a round or an opFetch
// has every block after the head sent.
func (r *replica) answerHead(from string, epoch uint64, q syncMsg) {
	if err := r.checkClaim(q.height, q.hash); err != nil {
		_ = r.refuse(from, epoch, q.op.String(), err, true)
		return
	}
	r.claim(from, epoch, q.height)
	head := r.chain.Head()
	start := head.Height + 1
	if q.height < head.Height { // q.height+1 cannot wrap
		start = q.height + 1
		if q.op == opHead && q.round == 0 {
			start = max(start, r.sentTo[from]+1)
		}
	}
	if start <= head.Height {
		r.do(action{kind: actSendBlocks, peer: from, from: start, to: head.Height, then: func(err error) {
			var cut *sendCut
			switch {
			case errors.As(err, &cut):
				// What never left is not skipped by the next announcement;
				// a peer that may not know it lacks it is told our head again.
				if r.sentTo[from] >= cut.at {
					r.sentTo[from] = cut.at - 1
				}
				if errors.Is(err, lamportmutex.ErrPeerBusy) {
					r.owe(from, opHead)
				}
			case err != nil:
				_ = r.fail(err)
			}
		}})
		r.sentTo[from] = max(r.sentTo[from], head.Height)
	}
	if q.op == opHead && q.round != 0 {
		r.send(from, syncMsg{op: opAnswer, genesis: r.genesis, round: q.round, height: head.Height, hash: head.Hash}, nil)
	}
}

// roundDue reports whether a PeerUp came since the last good sync round.
func (r *replica) roundDue() bool { return r.upGen != r.synced }

// startRound starts a sync round: it asks every other peer for its head
// after the blocks this node lacks. It returns the PeerUp count the round
// answers for.
func (r *replica) startRound() (gen uint64) {
	r.rounds++
	r.round, r.answers, r.roundErr = r.rounds, make(map[string]syncMsg, len(r.others)), nil
	r.ask(r.others)
	return r.upGen
}

// ask sends peers the current round's question, with this node's head.
func (r *replica) ask(peers []string) {
	head := r.chain.Head()
	q := syncMsg{op: opHead, genesis: r.genesis, round: r.round, height: head.Height, hash: head.Hash}
	round := r.round
	for _, p := range peers {
		// A peer not up yet is asked again when it comes up (the round
		// restarts), so ErrPeerDown is no failure.
		r.send(p, q, func(err error) {
			if err != nil && !errors.Is(err, lamportmutex.ErrPeerDown) && r.round == round && r.roundErr == nil {
				r.roundErr = fmt.Errorf("ledger: sync round: ask %s: %w", p, err)
				r.do(action{kind: actWakeRound})
			}
		})
	}
}

// reask asks every peer that has not answered the current round again,
// with this node's head now. A question or an answer that a full
// transport queue refused (ErrPeerBusy) is lost, and nothing else repairs
// it while this node holds the mutex and waits: a peer whose answer was
// refused is asked again, and sends the blocks after the head again, with
// its answer. An answer already taken is not replaced.
func (r *replica) reask() {
	if r.round != 0 {
		r.ask(r.missingAnswers())
	}
}

// errPeerCameUp ends a round that a PeerUp made stale.
var errPeerCameUp = errors.New("a peer came up during the sync round")

// roundResult reports how the round started for gen stands: done, with
// err nil if it succeeded. A PeerUp since it started ends it with
// errPeerCameUp. A peer whose answer is not in this node's chain is
// refused and quarantined, and the round waits for its next incarnation,
// as for a restart.
func (r *replica) roundResult(gen uint64) (done bool, err error) {
	switch {
	case r.upGen != gen:
		return true, errPeerCameUp
	case r.failed != nil:
		return true, fmt.Errorf("ledger: sync round: %w: %w", ErrDiverged, r.failed)
	case r.roundErr != nil:
		return true, r.roundErr
	case len(r.answers) < len(r.others):
		return false, nil
	}
	refused, err := r.checkAnswers()
	if len(refused) > 0 {
		for _, p := range refused {
			delete(r.answers, p)
		}
		return false, nil
	}
	return true, err
}

// missingAnswers returns the peers that have not answered the round.
func (r *replica) missingAnswers() []string {
	var missing []string
	for _, p := range r.others {
		if _, ok := r.answers[p]; !ok {
			missing = append(missing, p)
		}
	}
	return missing
}

// endRound ends the round started for gen; a good one makes the PeerUps
// up to gen synced.
func (r *replica) endRound(gen uint64, good bool) {
	r.round, r.answers, r.roundErr = 0, nil, nil
	if good {
		r.synced = gen
	}
}

// checkAnswers checks that this node has every peer's head. A peer whose
// head is not in this node's chain is refused (and returned); a peer ahead
// of this node after sending its blocks makes the round fail, and the
// blocks are asked for again.
func (r *replica) checkAnswers() (refused []string, err error) {
	head := r.chain.Head()
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(r.answers)) {
		a := r.answers[p]
		if a.height > head.Height {
			errs = append(errs, fmt.Errorf("ledger: sync round: peer %s has height %d (%s) but this node is at %d after its blocks",
				p, a.height, a.hash.Short(), head.Height))
			continue
		}
		if cerr := r.checkClaim(a.height, a.hash); cerr != nil {
			_ = r.refuse(p, r.epoch[p], "sync answer", cerr, true)
			refused = append(refused, p)
		}
	}
	if len(errs) > 0 {
		r.refetch()
	}
	return refused, errors.Join(errs...)
}
