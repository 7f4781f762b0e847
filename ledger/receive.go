package ledger

import (
	"errors"
	"fmt"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// MaxPending bounds the window of received blocks a node holds while it
// waits for an earlier one: only heights head+1 to head+MaxPending are
// held. A block beyond the window is dropped and fetched again later (see
// HandleRelease). Since every held block's transfer names two members,
// the memory this takes is bounded too.
const MaxPending = 1024

// received is a block and the peer that sent it, with its release or by
// catch-up (fetched).
type received struct {
	from    string
	epoch   uint64 // the sender's incarnation count when it arrived
	blk     Block
	fetched bool
}

// checkReceived checks what can be checked of blocks from peer from
// without this node's chain: the batch is valid on its own (checkBatch),
// every transfer is between two members, and a release is one run of
// blocks spending from the releasing peer, sealed once, at its end.
func (r *replica) checkReceived(from string, blocks []Block, fetched bool) error {
	if !fetched {
		if err := checkRelease(from, blocks); err != nil {
			return err
		}
	}
	if err := r.checkBatch(blocks); err != nil {
		return err
	}
	for _, b := range blocks {
		if !r.members[b.Transfer.From] || !r.members[b.Transfer.To] {
			return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: transfer %s -> %s", ErrUnknownClient, quote(b.Transfer.From), quote(b.Transfer.To))}
		}
		if !fetched && b.Transfer.From != from {
			return &BlockError{Height: b.Height, Err: fmt.Errorf("%w: a release from %s carries a block spending from %s", ErrNotOwner, from, quote(b.Transfer.From))}
		}
	}
	return nil
}

// quote bounds and escapes a peer-supplied string for an error message.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// checkBatch checks that blocks, as received in one batch, are valid on
// their own: no genesis accounts, no clock above the mutex's bound, and
// (verifySeals) consecutive heights above the genesis, each linked to the
// one before it, each hash matching its contents, and every block covered
// by a valid seal of its sender within the batch.
func (r *replica) checkBatch(blocks []Block) error {
	for _, b := range blocks {
		var err error
		switch {
		case b.Accounts != nil:
			err = fmt.Errorf("%w: accounts in a transfer block", ErrMalformedBlock)
		case b.Clock > lamportmutex.MaxClock:
			err = fmt.Errorf("%w: clock %d above lamportmutex.MaxClock", ErrBadClock, b.Clock)
		}
		if err != nil {
			return &BlockError{Height: b.Height, Err: err}
		}
	}
	return r.keys.verifySeals(blocks)
}

// peerRelease handles the payload of a peer's release (see
// Node.handleRelease): blocks is the decoded batch, and checkErr what
// decoding it or checkReceived found wrong with it. The refusal of the
// release, if any, is left in *verdict once the step's actions are
// applied.
func (r *replica) peerRelease(from string, blocks []Block, checkErr error, verdict *error) {
	if !r.acceptable(from) {
		return
	}
	epoch := r.epoch[from]
	if r.isBarred(from, epoch) {
		*verdict = &PeerError{Peer: from, What: "release", Err: errQuarantined}
		return
	}
	if checkErr != nil {
		*verdict = r.refuse(from, epoch, "release", checkErr, false)
		return
	}
	r.accept(from, epoch, blocks, false, verdict)
}

// accept takes blocks that came from peer from, in chain order, which
// passed checkReceived: with its release, or by catch-up (fetched). Blocks
// this node has are checked to be the same and skipped; the others are
// held (within the window, and while the incarnation of from that sent
// them lasts) until they extend the head, then verified, persisted and
// inserted. The peer's refusal, as HandleRelease describes,
// is left in *verdict (nil for fetched blocks, whose sender is
// quarantined through an action instead).
//
// A valid block for a height this node has, other than the one it has
// there, is judged by who sealed the two. Sealed by one member, they prove
// that member equivocated: if it sent the block itself, only it is refused
// and quarantined; if another peer relayed it on the same predecessor, the
// replicas forked, and the node stops with a *ConflictError. Sealed by two
// different members, they prove nothing about anyone (blocks are not bound
// to grants, so a member without the mutex can seal a block for any
// height, and an honest peer can relay it): the block is refused, its
// sender is not quarantined, and the node keeps its chain (see disagree).
func (r *replica) accept(from string, epoch uint64, blocks []Block, fetched bool, verdict *error) {
	head := r.chain.Head().Height
	var conflict, storeErr error
	var disagree *ConflictError
	for _, blk := range blocks {
		if blk.Height > head {
			break
		}
		own, _, oerr := r.block(blk.Height)
		parent, _, perr := r.block(blk.Height - 1)
		if storeErr = errors.Join(oerr, perr); storeErr != nil {
			break
		}
		if own.Hash == blk.Hash {
			continue // caught up already
		}
		maker := blk.Transfer.From
		switch {
		case maker != own.Transfer.From:
			// Two members each sealed a block for this height: one of them
			// may have had no grant, which nothing here can tell, and the
			// peer that relays one may be honest.
			disagree = &ConflictError{Height: blk.Height, Ours: own, Theirs: blk, Peer: from}
		case maker == from:
			conflict = &BlockError{Height: blk.Height, Err: fmt.Errorf("%w: the peer made another block %s for a height at which this node has its block %s",
				errEquivocation, blk.Hash.Short(), own.Hash.Short())}
		case blk.Prev == parent.Hash:
			conflict = &ConflictError{Height: blk.Height, Ours: own, Theirs: blk, Peer: from}
		default:
			disagree = &ConflictError{Height: blk.Height, Ours: own, Theirs: blk, Peer: from}
		}
		break
	}
	var ce *ConflictError
	switch {
	case storeErr != nil:
		r.fail(storeErr)
		return
	case disagree != nil:
		r.disagree(from, epoch, disagree)
		return
	case errors.As(conflict, &ce):
		r.fail(conflict)
		return
	case conflict != nil:
		err := r.refuse(from, epoch, kindOf(fetched), conflict, fetched)
		if !fetched {
			*verdict = err
		}
		return
	}
	beyond := 0
	for _, blk := range blocks {
		switch {
		case blk.Height <= head:
			continue
		case epoch != r.epoch[from]:
			// Sent by an incarnation that has ended: held, they would be
			// what dropPendingFrom drops.
			continue
		case blk.Height-head > MaxPending:
			beyond++
			continue
		}
		if other, dup := r.pending[blk.Height]; dup {
			if other.blk.Hash != blk.Hash {
				// One of the two is false, or the chain forked before the
				// gap; keep the first, and let the chain decide once the
				// gap fills.
				r.log.Warn("ledger: two different blocks wait at one height; kept the first",
					"height", blk.Height, "first_from", other.from, "first", other.blk.Hash.Short(),
					"from", from, "dropped", blk.Hash.Short())
			}
			continue
		}
		r.pending[blk.Height] = received{from: from, epoch: epoch, blk: blk, fetched: fetched}
	}
	if beyond > 0 {
		r.log.Info("ledger: blocks far ahead of the head dropped; they will be fetched again",
			"from", from, "head", head, "dropped", beyond)
		r.refetch()
	}
	var run []received
	for h := head + 1; ; h++ {
		p, ok := r.pending[h]
		if !ok {
			break
		}
		delete(r.pending, h)
		run = append(run, p)
	}
	if len(r.pending) > 0 {
		r.lagged() // a gap that lasts has the blocks fetched again
	}
	if len(run) == 0 {
		return
	}
	r.insert(from, epoch, fetched, run, verdict)
}

// disagree reports a block refused because this node has another
// member's block at its height (c.Theirs and c.Ours): the replicas
// disagree there. It logs at Warn once per incarnation of the peer (then at
// Debug, so that a faulty peer cannot flood the log) and emits
// EventDisagreement. The peer is not quarantined.
func (r *replica) disagree(from string, epoch uint64, c *ConflictError) {
	lvl := r.log.Debug
	if r.warned[from] != epoch+1 {
		r.warned[from] = epoch + 1
		lvl = r.log.Warn
	}
	lvl("ledger: refused a block for a height at which this node has another member's block; the replicas disagree there",
		"peer", from, "height", c.Height, "ours", c.Ours.Hash.Short(), "ours_by", c.Ours.Transfer.From,
		"theirs", c.Theirs.Hash.Short(), "theirs_by", quote(c.Theirs.Transfer.From))
	r.emit(Event{Kind: EventDisagreement, From: from, Block: c.Theirs, Err: c})
}

// errEquivocation: a peer made a second block for a height.
var errEquivocation = errors.New("equivocation")

func kindOf(fetched bool) string {
	if fetched {
		return "catch-up blocks"
	}
	return "release"
}

// insert verifies a run of received blocks that extends the head,
// persists the valid sealed prefix with one store append, then inserts it.
// A block that fails verification is refused: its sender is quarantined,
// and the blocks after it wait again (they may be honest blocks built on
// the block that should be there). A block whose only fault is that it
// does not extend its predecessor, which another peer sent (or this node
// made), is dropped without quarantine, and the blocks after the head
// fetched again. caller is the peer whose input is being handled; the
// refusal of its own release is left in *verdict, any other through the
// mutex's Quarantine.
func (r *replica) insert(caller string, epoch uint64, fetched bool, run []received, verdict *error) {
	d := r.chain.draft()
	var bad error
	for _, p := range run {
		// Every block held in r.pending passed checkReceived, whose
		// verifySeals checked its hash.
		if bad = d.addVerified(p.blk); bad != nil {
			break
		}
	}
	k := d.sealed() // the valid, sealed prefix is inserted even if a later block fails
	ok, rest := run[:k], run[k:]
	after := func() {
		if len(ok) > 0 {
			r.headFrom = ok[len(ok)-1].from
		}
		for _, p := range ok {
			r.log.Debug("block received", "from", p.from, "height", p.blk.Height, "hash", p.blk.Hash.Short(), "clock", p.blk.Clock)
			r.emit(Event{Kind: EventBlockInserted, Block: p.blk, From: p.from, Fetched: p.fetched})
		}
		r.judge(caller, epoch, fetched, run, rest, len(d.blocks), bad, verdict)
	}
	if len(ok) == 0 {
		after()
		return
	}
	r.persist(d.blocks[:k], func() {
		if err := r.chain.apply(d, k); err != nil {
			panic(fmt.Sprintf("ledger: blocks drafted in one step persisted but not inserted: %v", err))
		}
		after()
	}, func(err error) {
		r.fail(fmt.Errorf("persist blocks %d-%d: %w", ok[0].blk.Height, ok[len(ok)-1].blk.Height, err))
	})
}

// judge deals with rest, what follows the inserted prefix of run: its
// blocks wait again, but for run[i], which, if bad, is refused.
func (r *replica) judge(caller string, epoch uint64, fetched bool, run, rest []received, i int, bad error, verdict *error) {
	for _, p := range rest {
		if bad == nil || p.blk.Height != run[i].blk.Height {
			r.pending[p.blk.Height] = p // they wait for the seal that covers them
		}
	}
	if bad == nil {
		return
	}
	culprit := run[i]
	r.refetch()
	prevFrom := r.headFrom
	if i > 0 {
		prevFrom = run[i-1].from
	}
	if errors.Is(bad, ErrBadPrev) && culprit.blk.Height > 1 && prevFrom != culprit.from {
		// The block does not extend one that another peer sent (or this
		// node made or loaded; every member has the genesis): the chains
		// differ there, which proves nothing about the sender (see accept).
		r.log.Warn("ledger: dropped a block that does not extend this node's block before it; the replicas disagree there",
			"peer", culprit.from, "height", culprit.blk.Height, "block", culprit.blk.Hash.Short(), "by", quote(culprit.blk.Transfer.From),
			"prev", culprit.blk.Prev.Short(), "prev_from", prevFrom, "err", bad)
		return
	}
	if culprit.from == caller && culprit.epoch == epoch && culprit.fetched == fetched {
		err := r.refuse(caller, epoch, kindOf(fetched), bad, fetched)
		if !fetched {
			*verdict = err
		}
		return
	}
	_ = r.refuse(culprit.from, culprit.epoch, kindOf(culprit.fetched), bad, true)
}

// dropPending empties the blocks held ahead of a gap. The committer calls
// it once granted the mutex: by then every block from an earlier holder
// has arrived, so a block still held is no honest peer's.
func (r *replica) dropPending() {
	if len(r.pending) == 0 {
		return
	}
	from := make(map[string]int)
	for h, p := range r.pending {
		from[p.from]++
		delete(r.pending, h)
	}
	r.log.Warn("ledger: dropped blocks that waited for an earlier block no holder made", "senders", from)
}

// handleRelease handles the payload of a peer's release, the mutex's
// HandleRelease. An empty payload (a release with no transfer) is nothing
// to do. Otherwise the payload is a batch of blocks whose sender is the
// releasing peer, sealed once, at its last block, with that peer's key
// (see Block.Sig); each must extend this node's chain: its height,
// previous hash and hash must match, its sender must be the releasing peer
// and able to pay. They are written to the store (and synced, under
// SyncBeforeRelease), then inserted, before HandleRelease returns. A block
// this node already has (catch-up can bring it first) is skipped.
//
// Releases from different peers may arrive in any order (the transport
// orders only each pair), so a block may arrive before an earlier one from
// another peer. Such a block is held and inserted as soon as the gap is
// filled, if it lies within MaxPending of the head; a block beyond is
// dropped, and the node asks its peers for what it lacks. The mutex
// guarantees that by the time this node is granted the lock, every earlier
// block has arrived (after a restart, with the catch-up round's help).
//
// A payload that is bad input from the peer (undecodable, a block that does
// not extend the chain or fails verification, a block spending another
// client's money) is refused: HandleRelease returns a *PeerError (matching
// ErrPeerRefused) naming the peer and the cause, logs one line and emits
// EventPeerRefused; the mutex then refuses the release and quarantines that
// incarnation of the peer. Catch-up messages still queued from it are
// dropped, and so is a later release of that incarnation (refused
// again, without a log line). The node keeps running: reads work, and it
// commits again once the peer restarts and behaves. A bad block held ahead
// of a gap is found only when the gap fills; its sender is then
// quarantined through the mutex's Quarantine.
//
// The node stops (Err, EventFailed, ErrDiverged) only for its own storage
// failure, or for a fork proven by two valid blocks at one height that
// extend the same block, both sealed by one member other than the peer (a
// *ConflictError carrying both; see replica.accept). A block sealed by
// another member than the one whose block this node has at that height is
// refused without quarantine (EventDisagreement), and nil is returned.
//
// After Close, or once the node has stopped, a payload is ignored (nil is
// returned: the fault is not the peer's); the next incarnation fetches the
// block from its peers.
func (n *Node) handleRelease(from string, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	// Decoding and checking seals needs no state: done outside the step.
	blocks, err := DecodeBatch(payload)
	if err == nil {
		err = n.r.checkReceived(from, blocks, false)
	}
	var verdict error
	n.run(func(r *replica) { r.peerRelease(from, blocks, err, &verdict) })
	return verdict
}
