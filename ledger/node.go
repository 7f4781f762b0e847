package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"sync"

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
	// it sees every message, under the mutex's lock, and must return at once.
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
type Node struct {
	id         string
	signer     ed25519.PrivateKey // seals the batches this node commits
	keys       keyring            // every member's public key, from the genesis
	genesis    Hash               // names the ledger
	members    map[string]bool
	store      Store
	durability Durability
	log        *slog.Logger
	mutex      *lamportmutex.Mutex    // nil for a node that tests wire to a fake locker
	transport  lamportmutex.Transport // closed by Close; nil with mutex

	writeMu sync.Mutex // serialises changes to the chain (persist, then insert)

	mu          sync.RWMutex // guards the fields below
	chain       *Chain
	locker      locker
	failed      error // set once: the node has stopped taking transfers
	closed      bool
	rejected    map[TransferID]rejection // IDs whose transfer was refused for lack of funds: the newest IDWindow
	refusals    []TransferID             // the keys of rejected, a ring once full
	nextRefusal int                      // the oldest in refusals once it is full
	inflight    map[TransferID]chan struct{}
	grown       chan struct{} // closed and replaced whenever the chain grows

	pending map[uint64]received // blocks that arrived ahead of a gap, within MaxPending of the head; guarded by writeMu
	// headFrom is the peer whose block is the head, "" for a block this
	// node made or loaded; warned is, per peer, the incarnation (plus one)
	// whose disagreement was logged at Warn. Guarded by writeMu.
	headFrom string
	warned   map[string]uint64

	batcher // group commit: the queue of submitted transfers and its committer
	syncer  // syncing the store in the background (SyncAfterRelease)
	catchup // fetching missed blocks from peers
	events  // delivering events to Config.OnEvent

	testHookWait func() // called when a Submit waits for another with its ID
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
		ID: n.id, Peers: n.chain.Genesis().memberIDs(), Transport: tr, Handler: mutexHandler{n},
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
	members := make(map[string]bool)
	for _, id := range genesis.memberIDs() {
		members[id] = true
	}
	return &Node{
		id: cfg.ID, signer: slices.Clone(cfg.Signer), keys: chain.keys, genesis: genesis.Hash, members: members, store: st,
		durability: cfg.Durability, log: log.With("node", cfg.ID), events: events{onEvent: cfg.OnEvent},
		chain: chain, rejected: make(map[TransferID]rejection), inflight: make(map[TransferID]chan struct{}),
		grown:   make(chan struct{}),
		pending: make(map[uint64]received),
		warned:  make(map[string]uint64),
		batcher: newBatcher(cfg.MaxBatch),
		syncer:  syncer{checkpoint: checkpoint, durKick: make(chan struct{}, 1), durStop: make(chan struct{})},
		catchup: newCatchup(cfg.ID, genesis.memberIDs()),
	}, nil
}

// loadChain restores the chain that st holds. With a checkpoint, signed
// with this node's key pub, it verifies only the blocks after it; without
// one, or with one that does not verify, it verifies every block from
// genesis, reading the store a few thousand blocks at a time. Blocks at
// the end that no seal covers are the rest of a batch whose write a crash
// tore: they are cut off, with a warning.
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
	n.mu.Lock()
	n.locker = l
	n.mu.Unlock()
	n.startSyncer()
	n.startSync(l)
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
	if h.n.members[peer] && peer != h.n.id {
		h.n.emit(Event{Kind: EventPeerDown, From: peer})
	}
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
		n.mu.Lock()
		err := n.usable()
		if err == nil {
			err = n.checkInput(t)
		}
		if err != nil {
			n.mu.Unlock()
			return Result{}, err
		}
		if res, err, done := n.outcome(t); done {
			n.mu.Unlock()
			if err != nil {
				return Result{}, err
			}
			if err := n.awaitDurable(ctx, res.Block.Height); err != nil {
				return Result{}, fmt.Errorf("ledger: transfer %s: %w", t.ID, err)
			}
			return res, nil
		}
		wait, busy := n.inflight[t.ID]
		if !busy {
			n.inflight[t.ID] = make(chan struct{})
			n.mu.Unlock()
			return n.run(ctx, t)
		}
		hook := n.testHookWait
		n.mu.Unlock()
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

// usable reports why the node cannot take transfers, if it cannot.
// n.mu must be held.
func (n *Node) usable() error {
	switch {
	case n.closed:
		return ErrClosed
	case n.failed != nil:
		return fmt.Errorf("%w: %w", ErrDiverged, n.failed)
	}
	return nil
}

// checkInput validates t without looking at funds. n.mu must be held.
func (n *Node) checkInput(t Transfer) error {
	if _, _, err := n.chain.validate(t); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if t.From != n.id {
		return fmt.Errorf("ledger: %w: node %s cannot send from %s", ErrNotOwner, n.id, t.From)
	}
	return nil
}

// outcome returns the earlier outcome of t.ID, if there is one. n.mu must
// be held.
func (n *Node) outcome(t Transfer) (Result, error, bool) {
	if h, ok := n.chain.TransferHeight(t.ID); ok {
		b, _, err := n.blockLocked(h)
		if err != nil {
			return Result{}, fmt.Errorf("ledger: transfer %s: %w", t.ID, err), true
		}
		if b.Transfer != t {
			return Result{}, fmt.Errorf("ledger: %w: %s", ErrTransferIDConflict, b.Transfer), true
		}
		return Result{Transfer: t, Block: b, Duplicate: true}, nil, true
	}
	if r, ok := n.rejected[t.ID]; ok {
		if r.t != t {
			return Result{}, fmt.Errorf("ledger: %w: %s", ErrTransferIDConflict, r.t), true
		}
		return Result{}, r.err, true
	}
	return Result{}, nil, false
}
