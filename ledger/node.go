package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// locker is the distributed mutex as a Node uses it: *lamportmutex.Mutex,
// which NewNode builds. Unlock's payload reaches every other member's
// handleRelease before the release takes effect there, payloads from one
// peer arrive in order, Send's payload reaches the peer's handleMessage in
// order with them, and a peer's restart reaches handlePeerUp before a
// grant that it allows. Quarantine must not block.
type locker interface {
	Lock(ctx context.Context) (lamportmutex.Token, error)
	Unlock(payload []byte) error
	Send(to string, payload []byte) error
	Quarantine(peer string, cause error)
}

// Config configures NewNode.
type Config struct {
	// ID is this client's id; it must be a member of Genesis.
	ID string
	// Genesis is the ledger's block 0 (NewGenesis): its members, their
	// initial balances and their public keys. Its hash names the ledger;
	// every replica must be given the same, and a peer that runs another
	// ledger is refused. Required.
	Genesis Block
	// Signer is this client's Ed25519 private key; its public key must be
	// the one Genesis gives ID. The node seals each batch it commits with it.
	Signer ed25519.PrivateKey
	// Store holds the blocks; it must have been opened for Genesis. Nil
	// means a new MemStore. The Node owns it from NewNode on, and closes it.
	Store Store
	// Durability says when a block reaches the disk: SyncAfterRelease
	// (the default) or SyncBeforeRelease.
	Durability Durability
	// MaxBatch bounds the transfers committed in one mutex entry (group
	// commit: transfers submitted while the node waits for the mutex share
	// its next entry, one block each, sent with the one release and synced
	// to the store once). 1 takes the mutex once per transfer, as in the
	// textbook; 0 means DefaultMaxBatch; at most MaxBatch.
	MaxBatch int
	// Algorithm is the mutex's algorithm (lamportmutex.Lamport, the
	// default, or lamportmutex.RicartAgrawala); every member must run the
	// same one.
	Algorithm lamportmutex.Algorithm
	// Trace, if set, is the mutex's trace hook (lamportmutex.Config.Trace):
	// it sees every message, under the mutex's lock, and must return at
	// once without calling the Node (which may be waiting for that lock).
	Trace func(lamportmutex.Event)
	// Logger receives the node's and its mutex's logs; nil discards them.
	Logger *slog.Logger
	// OnEvent, if set, is called for every Event, one call at a time and in
	// the order they happened, on a goroutine of the Node's own: events
	// wait in a queue of EventQueueSize, so neither the mutex nor a
	// Transfer caller ever waits for OnEvent. A subscriber that falls that
	// far behind loses events, and is told how many (EventDropped). It may
	// call any method of the Node but Close. Close waits, up to its ctx,
	// for the events still queued; then it drops the rest, counted in
	// EventsDropped, and returns without waiting for a call in progress, so
	// a stalled subscriber cannot hang Close. No call starts after Close
	// returns.
	OnEvent func(Event)
}

// Durability says when a node's blocks reach its disk. Either way a
// Transfer reports success only once this node's own store has synced its
// block, so every success survives the loss of its client's power; and
// the store is append-only, so what survives is a prefix of the chain.
type Durability int

const (
	// SyncAfterRelease writes a batch's blocks, releases the mutex with
	// them, and syncs in the background, one sync for every batch written
	// meanwhile; received blocks are written and synced the same way. The
	// mutex is never held across a sync.
	SyncAfterRelease Durability = iota
	// SyncBeforeRelease syncs each batch before the mutex is released with
	// it, and each received batch before its release takes effect: no
	// peer sees a block that is not on its maker's disk, at the cost of a
	// sync or two inside every critical section.
	SyncBeforeRelease
)

// Result is the outcome of a committed transfer.
type Result struct {
	Transfer Transfer
	Block    Block    // the block holding the transfer
	Before   Balances // the table before the block; nil when Duplicate
	After    Balances // the table after the block; nil when Duplicate
	// Duplicate is true when the transfer ID was already committed: the
	// transfer was not applied again, and Block is the original block.
	Duplicate bool
}

// Node is one client of the replicated ledger: its chain, its store, and
// the mutex it takes around each transfer. Its methods are safe for
// concurrent use.
//
// Its replica has one owner at a time: whichever goroutine holds step (the
// mutex's delivery goroutine handling a release, message or PeerUp; the
// committer; the catch-up goroutine; the syncer) runs one input, applies
// every action the input queued, in order (see run), publishes the
// snapshot that reads use, and only then lets go. Store.Sync never runs
// under step in SyncAfterRelease; the syncer feeds its result back in.
// The other locks guard other things: the submit queue (qmu) and the
// event queue (emu).
type Node struct {
	id        string
	store     Store
	log       *slog.Logger
	mutex     *lamportmutex.Mutex    // nil for a node that tests wire to a fake locker
	transport lamportmutex.Transport // closed by Close; nil with mutex

	step     sync.Mutex // the replica's owner; guards the fields below
	r        *replica
	locker   locker
	progress chan struct{}      // closed and replaced when a sync round may have progressed
	tok      lamportmutex.Token // the committer's current entry
	granted  time.Time          // when it was granted
	later    []action           // messages to peers that the running step leaves for after it (see run)
	done     []action           // completions that the running step leaves for after its snapshot (see run)
	stepEvs  []Event            // events that the running step leaves for after its snapshot (see run)

	snap atomic.Pointer[snapshot] // what reads see; replaced after every step that changes it

	batcher     // group commit: the queue of submitted transfers and its committer
	syncer      // syncing the store in the background (SyncAfterRelease)
	catchupLoop // fetching missed blocks from peers
	events      // delivering events to Config.OnEvent

	testHookWait func() // called when a Submit waits for another with its ID
}

// snapshot is the state that cheap reads see, immutable once published.
type snapshot struct {
	head   Block
	chain  *Chain  // for its members and their indexes, which never change
	bal    []int64 // by member index
	failed error
	closed bool
	grown  chan struct{} // closed when a newer snapshot is published
}

type rejection struct {
	t   Transfer
	err error
}

// NewNode starts the node for cfg.ID, which takes part in the ledger
// through tr, the transport to its peers. It loads and verifies the blocks
// in cfg.Store, builds the node's mutex on tr (a lamportmutex.Mutex whose
// peers are the genesis's members), and starts taking transfers. It fails
// with ErrGenesisMismatch if the store holds another ledger.
//
// The Node owns tr and cfg.Store from the call on: Close closes them, and
// so does NewNode when it fails.
func NewNode(cfg Config, tr lamportmutex.Transport) (_ *Node, err error) {
	if tr == nil {
		if cfg.Store != nil {
			_ = cfg.Store.Close()
		}
		return nil, errors.New("ledger: nil transport")
	}
	n, err := newNode(cfg)
	if err != nil {
		return nil, errors.Join(err, tr.Close(context.Background()))
	}
	mu, err := lamportmutex.New(lamportmutex.Config{
		ID: n.id, Peers: n.r.chain.Genesis().memberIDs(), Transport: tr, Handler: mutexHandler{n},
		// Requests after a restart are stamped after every grant in the chain.
		StartClock: n.Head().Clock,
		Algorithm:  cfg.Algorithm, Trace: cfg.Trace, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("ledger: %w", err), tr.Close(context.Background()), n.closeStore())
	}
	n.mutex, n.transport = mu, tr
	n.start(mu)
	return n, nil
}

// newNode returns the node for cfg.ID, with its chain loaded from
// cfg.Store, and not started (see start). On error it closes cfg.Store.
func newNode(cfg Config) (_ *Node, err error) {
	st := cfg.Store
	defer func() {
		if err != nil && st != nil {
			_ = st.Close()
		}
	}()
	genesis := cfg.Genesis
	if _, err := NewChain(genesis); err != nil {
		return nil, fmt.Errorf("ledger: Config.Genesis: %w", err)
	}
	keys := genesisKeys(genesis)
	if !slices.Contains(genesis.memberIDs(), cfg.ID) {
		return nil, fmt.Errorf("ledger: %w: own id %q is not among the members", ErrUnknownClient, cfg.ID)
	}
	if err := checkSigner(cfg.Signer, keys[cfg.ID]); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultMaxBatch
	case cfg.MaxBatch < 0 || cfg.MaxBatch > MaxBatch:
		return nil, fmt.Errorf("ledger: MaxBatch %d is not between 1 and %d", cfg.MaxBatch, MaxBatch)
	}
	if cfg.Durability != SyncAfterRelease && cfg.Durability != SyncBeforeRelease {
		return nil, fmt.Errorf("ledger: unknown Durability %d", cfg.Durability)
	}
	if st == nil {
		if st, err = NewMemStore(genesis); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chain, checkpoint, err := loadChain(st, genesis, keys[cfg.ID], log)
	if err != nil {
		return nil, err
	}
	n := &Node{
		id: cfg.ID, store: st, log: log.With("node", cfg.ID), events: events{onEvent: cfg.OnEvent},
		progress:    make(chan struct{}),
		batcher:     newBatcher(cfg.MaxBatch),
		syncer:      syncer{durKick: make(chan struct{}, 1), durStop: make(chan struct{})},
		catchupLoop: catchupLoop{kick: make(chan struct{}, 1), stopSync: make(chan struct{})},
	}
	n.r = newReplica(cfg, chain, checkpoint, st.Read, n.log)
	// Round numbers start at random, so that an answer meant for an
	// earlier incarnation of this node is not taken for one of ours.
	n.r.rounds = rand.Uint64() >> 1
	n.publish()
	return n, nil
}

// loadChain restores the chain that st holds. With a checkpoint, signed
// with this node's key pub, it verifies only the blocks after it; without
// one, or with one that does not verify, it verifies every block from
// genesis, reading the store a few thousand blocks at a time. Blocks at
// the end that no seal covers are the rest of a batch whose write a crash
// tore: they are cut off, with a warning, once the heights of every block
// loaded are checked to follow on (else ErrBadHeight, and nothing is cut).
func loadChain(st Store, genesis Block, pub ed25519.PublicKey, log *slog.Logger) (_ *Chain, checkpoint uint64, err error) {
	if st.Genesis().Hash != genesis.Hash {
		return nil, 0, fmt.Errorf("ledger: %w: the store holds the ledger of genesis %s, not %s",
			ErrGenesisMismatch, st.Genesis().Hash.Short(), genesis.Hash.Short())
	}
	cp, tail, err := st.Load()
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: load store: %w", err)
	}
	var chain *Chain
	base := uint64(0) // the height the tail follows
	switch {
	case cp != nil:
		base = cp.Height
		checkpoint = cp.Height
		if chain, err = checkpointChain(st, genesis, pub, cp); err != nil {
			checkpoint = 0
			log.Warn("ledger: the checkpoint is not usable; verifying the chain from genesis", "height", cp.Height, "err", err)
			if chain, err = verifyStored(st, cp.Height); err != nil {
				return nil, 0, err
			}
		}
	case len(tail) == 0 || tail[0].Hash != genesis.Hash:
		return nil, 0, fmt.Errorf("ledger: %w: the store does not start with the genesis %s", ErrGenesisMismatch, genesis.Hash.Short())
	default:
		tail = tail[1:]
		if chain, err = NewChain(genesis); err != nil {
			return nil, 0, err
		}
	}
	for i, b := range tail { // before anything is cut by counting blocks
		if want := base + 1 + uint64(i); b.Height != want {
			return nil, 0, fmt.Errorf("ledger: verify store: %w", &BlockError{Height: b.Height,
				Err: fmt.Errorf("%w: the store's block after height %d is at height %d", ErrBadHeight, want-1, b.Height)})
		}
	}
	if k := sealedPrefix(tail); k < len(tail) {
		log.Warn("ledger: cutting off the unsealed blocks at the end of the store",
			"height", tail[k].Height, "blocks", len(tail)-k)
		if err := st.Truncate(base + uint64(k)); err != nil {
			return nil, 0, fmt.Errorf("ledger: cut the unsealed tail of the store: %w", err)
		}
		tail = tail[:k]
	}
	if err := chain.extend(blockSeq(tail)); err != nil {
		return nil, 0, fmt.Errorf("ledger: verify store: %w", err)
	}
	return chain, checkpoint, nil
}

// checkpointChain returns the chain that cp describes, checked against
// the block the store holds at its height.
func checkpointChain(st Store, genesis Block, pub ed25519.PublicKey, cp *Checkpoint) (*Chain, error) {
	chain, err := chainFromCheckpoint(genesis, pub, cp.Data)
	if err != nil {
		return nil, err
	}
	if chain.Head().Height != cp.Height {
		return nil, fmt.Errorf("%w: its head is at %d, the store's checkpoint at %d", errBadCheckpoint, chain.Head().Height, cp.Height)
	}
	at, err := st.Read(cp.Height, cp.Height)
	if err != nil {
		return nil, fmt.Errorf("ledger: read the checkpoint's block: %w", err)
	}
	if at[0].Hash != chain.Head().Hash {
		return nil, fmt.Errorf("%w: its head %s is not the store's block %s", errBadCheckpoint, chain.Head().Hash.Short(), at[0].Hash.Short())
	}
	return chain, nil
}

// verifyStored verifies the blocks st holds from genesis up to height to,
// reading them a few thousand at a time, and returns their chain.
func verifyStored(st Store, to uint64) (*Chain, error) {
	c, err := verifyChain(func(yield func(Block, error) bool) {
		for h := uint64(0); h <= to; h += MaxReadBlocks {
			blocks, err := st.Read(h, min(to, h+MaxReadBlocks-1))
			if err != nil {
				yield(Block{}, fmt.Errorf("ledger: read store: %w", err))
				return
			}
			for _, b := range blocks {
				if !yield(b, nil) {
					return
				}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: verify store: %w", err)
	}
	return c, nil
}

// blockSeq yields blocks, in order.
func blockSeq(blocks []Block) iter.Seq2[Block, error] {
	return func(yield func(Block, error) bool) {
		for _, b := range blocks {
			if !yield(b, nil) {
				return
			}
		}
	}
}

// sealedPrefix returns how many of blocks, up to and including the last
// sealed one, a seal covers.
func sealedPrefix(blocks []Block) int {
	for i := len(blocks); i > 0; i-- {
		if blocks[i-1].Sealed() {
			return i
		}
	}
	return 0
}

// start gives the node its mutex and starts its goroutines.
func (n *Node) start(l locker) {
	n.run(func(*replica) { n.locker = l })
	n.startSyncer()
	n.startSync()
	n.startCommitter(l)
}

// checkSigner checks that key is a well-formed private key of pub.
func checkSigner(key ed25519.PrivateKey, pub ed25519.PublicKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: Signer has %d bytes, want %d", ErrBadKey, len(key), ed25519.PrivateKeySize)
	}
	// A private key holds its seed and its public key, and signing uses
	// both: each must be pub's.
	if !key.Public().(ed25519.PublicKey).Equal(pub) ||
		!ed25519.NewKeyFromSeed(key.Seed()).Public().(ed25519.PublicKey).Equal(pub) {
		return fmt.Errorf("%w: Signer's public key is not the one Keys gives this member", ErrBadKey)
	}
	return nil
}

// mutexHandler is the node's side of its mutex (lamportmutex.Handler).
type mutexHandler struct{ n *Node }

func (h mutexHandler) HandleRelease(from string, payload []byte) error {
	return h.n.handleRelease(from, payload)
}

func (h mutexHandler) HandleMessage(from string, payload []byte) error {
	return h.n.handleMessage(from, payload)
}

func (h mutexHandler) HandlePeerUp(peer string) { h.n.handlePeerUp(peer) }

func (h mutexHandler) HandlePeerDown(peer string) {
	h.n.run(func(r *replica) { r.peerDown(peer) })
}

// ID returns the node's client id.
func (n *Node) ID() string { return n.id }

// Transfer moves amount from this node's client to client to, under the
// mutex, with a new random transfer ID. See Submit.
func (n *Node) Transfer(ctx context.Context, to string, amount int64) (Result, error) {
	return n.Submit(ctx, Transfer{ID: NewTransferID(), From: n.id, To: to, Amount: amount})
}

// TransferWithID is Transfer with a caller-chosen ID, for retries: a
// repeated ID gets the first outcome and is never applied twice, while
// this client has committed fewer than IDWindow transfers since.
func (n *Node) TransferWithID(ctx context.Context, id TransferID, to string, amount int64) (Result, error) {
	return n.Submit(ctx, Transfer{ID: id, From: n.id, To: to, Amount: amount})
}

// Submit commits t. A zero t.ID is replaced by a random one; an empty
// t.From means this node's id.
//
// Input errors come first, with nothing written and the mutex not taken:
// ErrUnknownClient, ErrInvalidAmount, ErrSelfTransfer, ErrNotOwner (t.From
// is another client), ErrTransferIDConflict. Then Submit takes the mutex,
// checks the local balance, and either persists and inserts the new block
// and releases the mutex with the block as payload, or releases with no
// payload and returns an error wrapping ErrInsufficientFunds that states
// the balance. The mutex is released on every path.
//
// A transfer ID already committed gets the original block with
// Result.Duplicate set, once this node's store has synced that block (a
// block fetched from a peer may not be yet); one already refused for lack
// of funds gets the same error again (the node remembers its newest
// IDWindow refusals, in memory only). Concurrent calls with one ID wait
// for the first.
func (n *Node) Submit(ctx context.Context, t Transfer) (Result, error) {
	if t.ID.IsZero() {
		t.ID = NewTransferID()
	}
	if t.From == "" {
		t.From = n.id
	}
	res, err := n.submit(ctx, t)
	ev := Event{Kind: EventTransferCommitted, Transfer: t, Block: res.Block, Duplicate: res.Duplicate, Err: err}
	if err != nil {
		ev.Kind = EventTransferRejected
	}
	n.emit(ev)
	return res, err
}

func (n *Node) submit(ctx context.Context, t Transfer) (Result, error) {
	for {
		var res Result
		var err error
		var done bool
		n.run(func(r *replica) {
			if err = r.usable(); err == nil {
				err = r.checkInput(t)
			}
			if err == nil {
				res, err, done = r.outcome(t)
			}
		})
		switch {
		case err != nil:
			return Result{}, err
		case done:
			if err := n.awaitDurable(ctx, res.Block.Height); err != nil {
				return Result{}, fmt.Errorf("ledger: transfer %s: %w", t.ID, err)
			}
			return res, nil
		}
		n.qmu.Lock()
		wait, busy := n.inflight[t.ID]
		if !busy {
			n.inflight[t.ID] = make(chan struct{})
			n.qmu.Unlock()
			return n.submitQueued(ctx, t)
		}
		hook := n.testHookWait
		n.qmu.Unlock()
		if hook != nil {
			hook()
		}
		select { // another call with this ID is running: take its outcome
		case <-wait:
		case <-ctx.Done():
			return Result{}, fmt.Errorf("ledger: transfer %s: %w", t.ID, ctx.Err())
		}
	}
}
