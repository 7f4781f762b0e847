package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Locker is the distributed mutex a Node takes around each transfer, with
// its application channel for catch-up. *lamportmutex.Mutex satisfies it.
// Unlock's payload must be delivered to every other member's
// Node.HandleRelease before the release takes effect there, payloads from
// one peer must arrive in order, and Send's payload must reach the peer's
// Node.HandleMessage in order with them. The peer's restarts must be
// reported to Node.HandlePeerUp before a grant that they allow.
type Locker interface {
	Messenger
	// Lock blocks until this node holds the mutex or ctx is done. The
	// token's Clock is stored in the block made under it.
	Lock(ctx context.Context) (lamportmutex.Token, error)
	// Unlock releases the mutex, carrying payload (possibly nil) to peers.
	Unlock(payload []byte) error
}

// Config configures NewNode.
type Config struct {
	// ID is this client's id; it must be one of Members.
	ID string
	// Members are the ids of all clients of the ledger, this one included.
	Members []string
	// Keys holds every member's Ed25519 public key, under which the
	// member's blocks are sealed. The keys are part of the genesis, so the
	// ledger's hash binds them: every replica must be given the same.
	Keys map[string]ed25519.PublicKey
	// Signer is this client's Ed25519 private key; its public key must be
	// Keys[ID]. The node seals each batch it commits with it.
	Signer ed25519.PrivateKey
	// InitialBalance is every member's balance in the genesis block;
	// 0 means DefaultInitialBalance.
	InitialBalance int64
	// Store holds the blocks. It must have been opened for the same
	// genesis (see NewGenesis). Nil means a new MemStore. The Node owns it
	// and closes it on Close.
	Store Store
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// MaxBatch bounds the transfers committed in one mutex entry (group
	// commit: transfers submitted while the node waits for the mutex share
	// its next entry, one block each, sent with the one release and synced
	// to the store once). 1 takes the mutex once per transfer, as in the
	// textbook; 0 means DefaultMaxBatch; at most MaxBatch.
	MaxBatch int
	// OnEvent, if set, is called for every Event, one call at a time and in
	// the order they happened, on a goroutine of the Node's own: events
	// wait in a queue of EventQueueSize, so neither the mutex nor a
	// Transfer caller ever waits for OnEvent. A subscriber that falls that
	// far behind loses events, and is told how many (EventDropped). It may
	// call any method of the Node but Close. Close waits for the events
	// still queued for up to a second (eventCloseWait); then it drops
	// the rest, counted in EventsDropped, and returns without waiting for
	// a call in progress, so a stalled subscriber cannot hang Close. No
	// call starts after Close returns.
	OnEvent func(Event)
}

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

// Node is one client of the replicated ledger. See the package doc for
// how it is wired to its mutex. Its methods are safe for concurrent use.
type Node struct {
	id      string
	signer  ed25519.PrivateKey // seals the batches this node commits
	keys    keyring            // every member's public key, from the genesis
	members map[string]bool
	store   Store
	log     *slog.Logger

	writeMu sync.Mutex // serialises changes to the chain (persist, then insert)

	mu       sync.RWMutex // guards the fields below
	chain    *Chain
	locker   Locker
	failed   error // set once: the node has stopped taking transfers
	closed   bool
	rejected map[TransferID]rejection // IDs whose transfer was refused for lack of funds
	inflight map[TransferID]chan struct{}
	grown    chan struct{} // closed and replaced whenever the chain grows

	pending map[uint64]received // blocks that arrived ahead of a gap, within MaxPending of the head; guarded by writeMu
	// headFrom is the peer whose block is the head, "" for a block this
	// node made or loaded; warned is, per peer, the incarnation (plus one)
	// whose disagreement was logged at Warn. Guarded by writeMu.
	headFrom string
	warned   map[string]uint64

	batcher // group commit: the queue of submitted transfers and its committer
	catchup // fetching missed blocks from peers
	events  // delivering events to Config.OnEvent

	testHookWait func() // called when a Submit waits for another with its ID
}

type rejection struct {
	t   Transfer
	err error
}

// NewNode returns the node for cfg.ID, loading and verifying the blocks in
// cfg.Store. It fails with ErrGenesisMismatch if the store holds another
// ledger. Call SetLocker before Transfer.
func NewNode(cfg Config) (*Node, error) {
	balance := cfg.InitialBalance
	if balance == 0 {
		balance = DefaultInitialBalance
	}
	genesis, err := NewGenesis(cfg.Members, balance, cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if _, ok := slicesIndex(cfg.Members, cfg.ID); !ok {
		return nil, fmt.Errorf("ledger: %w: own id %q is not among the members", ErrUnknownClient, cfg.ID)
	}
	if err := checkSigner(cfg.Signer, cfg.Keys[cfg.ID]); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	st := cfg.Store
	if st == nil {
		if st, err = NewMemStore(genesis); err != nil {
			return nil, err
		}
	}
	blocks, err := st.Blocks()
	if err != nil {
		return nil, fmt.Errorf("ledger: load store: %w", err)
	}
	if len(blocks) == 0 || blocks[0].Hash != genesis.Hash {
		return nil, fmt.Errorf("ledger: %w: store does not hold the genesis %s of members %v with balance %d",
			ErrGenesisMismatch, genesis.Hash.Short(), genesis.Accounts, balance)
	}
	chain, err := newChainFrom(blocks)
	if err != nil {
		return nil, fmt.Errorf("ledger: verify store: %w", err)
	}
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultMaxBatch
	case cfg.MaxBatch < 0 || cfg.MaxBatch > MaxBatch:
		return nil, fmt.Errorf("ledger: MaxBatch %d is not between 1 and %d", cfg.MaxBatch, MaxBatch)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	members := make(map[string]bool, len(cfg.Members))
	for _, id := range cfg.Members {
		members[id] = true
	}
	return &Node{
		id: cfg.ID, signer: slices.Clone(cfg.Signer), keys: chain.keys, members: members, store: st, log: log.With("node", cfg.ID), events: events{onEvent: cfg.OnEvent},
		chain: chain, rejected: make(map[TransferID]rejection), inflight: make(map[TransferID]chan struct{}),
		grown:   make(chan struct{}),
		pending: make(map[uint64]received),
		warned:  make(map[string]uint64),
		batcher: newBatcher(cfg.MaxBatch),
		catchup: newCatchup(cfg.ID, cfg.Members),
	}, nil
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

func slicesIndex(s []string, v string) (int, bool) {
	for i, x := range s {
		if x == v {
			return i, true
		}
	}
	return -1, false
}

// MutexConfig returns cfg with the node's handlers set, for
// lamportmutex.New: OnRelease (HandleRelease), OnMessage (HandleMessage)
// and OnPeerUp (HandlePeerUp); and StartClock raised to the head block's
// clock, so that requests after a restart are stamped after every grant
// in the chain.
func (n *Node) MutexConfig(cfg lamportmutex.Config) lamportmutex.Config {
	cfg.OnRelease = n.HandleRelease
	cfg.OnMessage = n.HandleMessage
	cfg.OnPeerUp = n.HandlePeerUp
	cfg.StartClock = max(cfg.StartClock, n.Head().Clock)
	return cfg
}

// SetLocker gives the node its mutex. It is separate from NewNode because
// the mutex needs the node's handlers at construction (see MutexConfig).
// It may be called once.
func (n *Node) SetLocker(l Locker) error {
	if l == nil {
		return errors.New("ledger: SetLocker: nil locker")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.locker != nil {
		return errors.New("ledger: SetLocker: locker already set")
	}
	n.locker = l
	n.startSync(l)
	n.startCommitter(l)
	return nil
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
// Result.Duplicate set; one already refused for lack of funds gets the
// same error again (refusals are remembered in memory only). Concurrent
// calls with one ID wait for the first.
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
			return res, err
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
	case n.locker == nil:
		return ErrNoLocker
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
		b, _ := n.block(h)
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
