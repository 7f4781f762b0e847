package ledger

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// replica is one node's copy of the ledger as plain state: the chain (head,
// balances, recent window), the blocks held ahead of a gap, the refused
// transfers it remembers, the catch-up state (the peers' incarnations, the
// quarantined ones, what was sent to whom, the heads they told, the
// announcements owed them, the sync round and its answers), and the
// heights written to and synced on the store.
//
// It starts no goroutine, takes no lock, reads no clock and writes
// nothing. Each input is a method (a peer's release, a catch-up message,
// a PeerUp, a batch of transfers to commit, a sync's result, ...) that
// changes the state and queues what must be done, in order, in out:
// persist blocks, release the mutex, send to a peer, send a peer stored
// blocks, quarantine a peer, emit an event, complete waiting transfers.
// Its one way to the outside is read, which returns blocks older than the
// chain's window from the store.
//
// Ordering rule: a block is persisted before its insertion is visible
// anywhere. An input that has blocks to write queues actPersist last, with
// a continuation (action.then) that inserts them once the write succeeded
// and queues what follows (events, the release with the blocks as its
// payload, the completion of their transfers). So nothing that shows a
// block (a snapshot, a release payload, a success) is done before it is
// on the store.
//
// Ownership: a Node's replica is used only under Node.step, by whichever
// goroutine runs a step; that goroutine applies every action the step
// queued, continuations included, and publishes the snapshot before it lets
// go (see Node.run). Store.Sync runs outside it, in SyncAfterRelease; its
// result comes back as an input (synced).
type replica struct {
	// Fixed at construction; read without the step lock too.
	id         string
	signer     ed25519.PrivateKey // seals the batches this node commits
	keys       keyring            // every member's public key, from the genesis
	genesis    Hash               // names the ledger
	members    map[string]bool
	others     []string // every member but this node
	durability Durability
	maxBatch   int
	log        *slog.Logger
	read       func(from, to uint64) ([]Block, error) // the store's old blocks

	chain       *Chain
	failed      error // set once: the node has stopped taking transfers
	closed      bool
	rejected    map[TransferID]rejection // IDs whose transfer was refused for lack of funds: the newest IDWindow
	refusals    []TransferID             // the keys of rejected, a ring once full
	nextRefusal int                      // the oldest in refusals once it is full

	pending map[uint64]received // blocks that arrived ahead of a gap, within MaxPending of the head
	// headFrom is the peer whose block is the head, "" for a block this
	// node made or loaded; warned is, per peer, the incarnation (plus one)
	// whose disagreement was logged at Warn.
	headFrom string
	warned   map[string]uint64

	catchupState
	durableState

	out   []action // what the inputs so far ask for, in order
	spare []action // an applied queue's backing array, for the next
}

// actionKind says what an action asks of the replica's owner.
type actionKind int

const (
	// actPersist: append blocks to the store (and sync them, under
	// SyncBeforeRelease); then is called with the result.
	actPersist actionKind = iota + 1
	// actRelease: release the mutex with payload (nil for none); then is
	// called with the result. blocks is how many blocks payload carries.
	actRelease
	// actSend: send payload to peer (the mutex's Send); then, if set, is
	// called with the result. op names it in a log line.
	actSend
	// actSendBlocks: send peer the blocks from..to, read from the chain's
	// window or the store, as opBlocks messages that each end at a seal.
	actSendBlocks
	// actQuarantine: quarantine peer's current incarnation for cause.
	actQuarantine
	// actEmit: emit ev.
	actEmit
	// actDone: run the completions waits with err.
	actDone
	// actKickSyncer: wake the background syncer.
	actKickSyncer
	// actKickCatchup: wake the catch-up goroutine (its inbox has work).
	actKickCatchup
	// actWakeRound: wake a committer waiting in a sync round.
	actWakeRound
)

// action is one thing a replica's input asks its owner to do.
type action struct {
	kind     actionKind
	peer     string
	op       syncOp
	payload  []byte
	blocks   []Block
	from, to uint64
	cause    error
	ev       Event
	waits    []syncWait
	then     func(error)
}

func newReplica(cfg Config, chain *Chain, checkpoint uint64, read func(from, to uint64) ([]Block, error), log *slog.Logger) *replica {
	members := make(map[string]bool)
	ids := chain.Genesis().memberIDs()
	for _, id := range ids {
		members[id] = true
	}
	r := &replica{
		id: cfg.ID, signer: slices.Clone(cfg.Signer), keys: chain.keys, genesis: chain.Genesis().Hash, members: members,
		others:     slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == cfg.ID }),
		durability: cfg.Durability, maxBatch: cfg.MaxBatch, log: log, read: read,
		chain: chain, rejected: make(map[TransferID]rejection),
		pending:      make(map[uint64]received),
		warned:       make(map[string]uint64),
		catchupState: newCatchupState(),
	}
	r.written, r.durable, r.checkpoint = chain.Head().Height, chain.Head().Height, checkpoint
	return r
}

// take returns the actions queued so far and empties the queue.
func (r *replica) take() []action {
	out := r.out
	r.out, r.spare = r.spare[:0], nil
	return out
}

// recycle gives back a slice that take returned, once its actions are
// applied, for the queue to reuse.
func (r *replica) recycle(acts []action) {
	clear(acts)
	r.spare = acts[:0]
}

func (r *replica) do(a action) { r.out = append(r.out, a) }

func (r *replica) emit(ev Event) { r.do(action{kind: actEmit, ev: ev}) }

// usable reports why the node cannot take transfers, if it cannot.
func (r *replica) usable() error {
	switch {
	case r.closed:
		return ErrClosed
	case r.failed != nil:
		return fmt.Errorf("%w: %w", ErrDiverged, r.failed)
	}
	return nil
}

// acceptable reports whether the node takes blocks: not after Close, and
// not once it has stopped.
func (r *replica) acceptable(from string) bool {
	switch {
	case r.closed:
		r.log.Debug("ledger: blocks ignored after Close", "from", from)
		return false
	case r.failed != nil:
		r.log.Debug("ledger: blocks ignored: the node has stopped", "from", from, "err", r.failed)
		return false
	}
	return true
}

// fail puts the node in the failed state (the first cause wins), logs and
// reports it, and returns the error wrapping ErrDiverged.
func (r *replica) fail(cause error) error {
	first := r.failed == nil
	if first {
		r.failed = cause
	}
	err := fmt.Errorf("ledger: %w: %w", ErrDiverged, cause)
	if first {
		r.log.Error("ledger: LEDGER STOPPED", "err", cause)
		r.emit(Event{Kind: EventFailed, Err: err})
		r.do(action{kind: actWakeRound})
	}
	return err
}

// block returns the block at height h of the local chain, and false if h
// is above the head: from the chain's recent window, or else from the
// store. An error is the store's.
func (r *replica) block(h uint64) (Block, bool, error) {
	if b, ok := r.chain.Block(h); ok || h > r.chain.Head().Height {
		return b, ok, nil
	}
	blocks, err := r.read(h, h)
	if err != nil {
		return Block{}, false, fmt.Errorf("ledger: read block %d from the store: %w", h, err)
	}
	return blocks[0], true, nil
}

// persist queues the write of blocks, and then, once it succeeded, notes
// them written and runs inserted; a failed write runs failed instead. It
// must be the last action its input queues.
func (r *replica) persist(blocks []Block, inserted func(), failed func(error)) {
	r.do(action{kind: actPersist, blocks: blocks, then: func(err error) {
		if err != nil {
			failed(err)
			return
		}
		r.wrote(blocks[len(blocks)-1].Height)
		inserted()
	}})
}

// checkInput validates t without looking at funds.
func (r *replica) checkInput(t Transfer) error {
	if _, _, err := r.chain.validate(t); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if t.From != r.id {
		return fmt.Errorf("ledger: %w: node %s cannot send from %s", ErrNotOwner, r.id, t.From)
	}
	return nil
}

// outcome returns the earlier outcome of t.ID, if there is one.
func (r *replica) outcome(t Transfer) (Result, error, bool) {
	if h, ok := r.chain.TransferHeight(t.ID); ok {
		b, _, err := r.block(h)
		if err != nil {
			return Result{}, fmt.Errorf("ledger: transfer %s: %w", t.ID, err), true
		}
		if b.Transfer != t {
			return Result{}, fmt.Errorf("ledger: %w: %s", ErrTransferIDConflict, b.Transfer), true
		}
		return Result{Transfer: t, Block: b, Duplicate: true}, nil, true
	}
	if rj, ok := r.rejected[t.ID]; ok {
		if rj.t != t {
			return Result{}, fmt.Errorf("ledger: %w: %s", ErrTransferIDConflict, rj.t), true
		}
		return Result{}, rj.err, true
	}
	return Result{}, nil, false
}

// reject remembers that t was refused with err, for a retry of its ID: the
// newest IDWindow refusals are kept, the oldest forgotten first.
func (r *replica) reject(t Transfer, err error) {
	if _, ok := r.rejected[t.ID]; ok {
		return
	}
	if len(r.refusals) < IDWindow {
		r.refusals = append(r.refusals, t.ID)
	} else { // a ring: refusals[nextRefusal] is the oldest
		delete(r.rejected, r.refusals[r.nextRefusal])
		r.refusals[r.nextRefusal] = t.ID
		r.nextRefusal = (r.nextRefusal + 1) % IDWindow
	}
	r.rejected[t.ID] = rejection{t: t, err: err}
}

// refuse reports bad input from incarnation epoch of peer: it logs one
// line, emits EventPeerRefused, and bars that incarnation: what it queued
// and what it sends later are dropped. With quarantine set, which is for
// input found off the mutex's handler for peer's own message, it also
// queues the mutex's Quarantine; otherwise the mutex quarantines the peer
// when the handler returns the error. It returns the *PeerError.
func (r *replica) refuse(peer string, epoch uint64, what string, cause error, quarantine bool) error {
	err := &PeerError{Peer: peer, What: what, Err: cause}
	r.log.Warn("ledger: refused bad input from a peer; quarantined it", "peer", peer, "what", what, "err", cause)
	r.emit(Event{Kind: EventPeerRefused, From: peer, Err: err})
	if r.members[peer] && epoch == r.epoch[peer] {
		r.barred[peer] = epoch + 1
		delete(r.claims, peer)
		delete(r.owed, peer)
		if quarantine {
			r.do(action{kind: actQuarantine, peer: peer, cause: err})
		}
	}
	return err
}

// errQuarantined: input from an incarnation already quarantined.
var errQuarantined = errors.New("the peer is quarantined until it restarts")
