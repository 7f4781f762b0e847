package ledger

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// QueueLen returns how many transfers wait for the committer, for tests.
func QueueLen(n *Node) int {
	n.qmu.Lock()
	defer n.qmu.Unlock()
	return len(n.queue)
}

// MaxInboxControl bounds a peer's queued catch-up messages other than
// blocks.
const MaxInboxControl = maxInboxControl

// TestKey and TestPubKeys give members deterministic keys in tests.
var (
	TestKey     = testKey
	TestPubKeys = testPubKeys
)

// PendingLen returns how many received blocks wait for an earlier one, for
// tests.
func PendingLen(n *Node) int {
	n.step.Lock()
	defer n.step.Unlock()
	return len(n.r.pending)
}

// Locker is the mutex a test wires a node to, in place of the one NewNode
// builds.
type Locker = locker

// NewUnwired returns a node that is not started: a test gives it a Locker
// with SetLocker, and delivers the mutex's callbacks itself.
func NewUnwired(cfg Config) (*Node, error) { return newNode(cfg) }

// SetLocker starts a node from NewUnwired on l.
func (n *Node) SetLocker(l Locker) error {
	n.start(l)
	return nil
}

// Handler returns the node's side of its mutex, for a test that builds the
// mutex itself.
func (n *Node) Handler() lamportmutex.Handler { return mutexHandler{n} }

func (n *Node) HandleRelease(from string, payload []byte) error {
	return n.handleRelease(from, payload)
}

func (n *Node) HandleMessage(from string, payload []byte) error {
	return n.handleMessage(from, payload)
}

func (n *Node) HandlePeerUp(peer string) { n.handlePeerUp(peer) }

// GenesisForTest returns the genesis of members with balance each (0 means
// DefaultInitialBalance) and the test keys.
func GenesisForTest(members []string, balance int64) Block {
	if balance == 0 {
		balance = DefaultInitialBalance
	}
	g, err := NewGenesis(members, balance, testPubKeys(members...))
	if err != nil {
		panic(err)
	}
	return g
}

// MutexConfig returns cfg with the node's handler and its StartClock, for a
// test that builds the node's mutex itself.
func (n *Node) MutexConfig(cfg lamportmutex.Config) lamportmutex.Config {
	cfg.Handler = mutexHandler{n}
	cfg.StartClock = max(cfg.StartClock, n.Head().Clock)
	return cfg
}

// Names the tests use that the package does not export.
var (
	NewChainFrom       = newChainFrom
	NewGenesisAccounts = newGenesisAccounts
	DecodeBlock        = decodeBlock
	ChainBlocks        = chainBlocks
)

// chainBlocks returns the blocks of c, genesis first, for tests of chains
// that its recent window still holds whole.
func chainBlocks(c *Chain) []Block {
	blocks := make([]Block, c.Len())
	for h := range blocks {
		b, ok := c.Block(uint64(h))
		if !ok {
			panic(fmt.Sprintf("chainBlocks: a chain of %d blocks no longer holds block %d", c.Len(), h))
		}
		blocks[h] = b
	}
	return blocks
}

// VerifyBlocks verifies blocks from genesis (hashes, links, seals,
// transfers, funds) and returns the resulting balance table. The error is
// a *BlockError naming the first bad height.
func VerifyBlocks(blocks []Block) (Balances, error) {
	c, err := newChainFrom(blocks)
	if err != nil {
		return nil, err
	}
	return c.Balances(), nil
}

// Fold computes the balance table of a chain of blocks from scratch: the
// genesis accounts, then every transfer in order. It checks funds and
// membership but not hashes.
func Fold(blocks []Block) (Balances, error) {
	if len(blocks) == 0 {
		return nil, &BlockError{Height: 0, Err: fmt.Errorf("%w: empty chain", ErrBadGenesis)}
	}
	b, err := genesisBalances(blocks[0])
	if err != nil {
		return nil, &BlockError{Height: 0, Err: err}
	}
	for i, blk := range blocks[1:] {
		if err := b.Apply(blk.Transfer); err != nil {
			return nil, &BlockError{Height: uint64(i + 1), Err: err}
		}
	}
	return b, nil
}

// VerifyChain re-checks a chain that its window holds whole from
// genesis, and that the state it holds is the one its blocks imply.
func VerifyChain(c *Chain) error {
	fresh, err := newChainFrom(chainBlocks(c))
	if err != nil {
		return err
	}
	return c.sameState(fresh)
}

// sameState reports, as an error, how o differs from c in what the chain
// implies: the genesis, the head, the balances and the transfer-ID
// windows. The blocks each holds in memory do not count.
func (c *Chain) sameState(o *Chain) error {
	switch {
	case c.genesis.Hash != o.genesis.Hash:
		return fmt.Errorf("ledger: genesis %s, other chain has %s", c.genesis.Hash.Short(), o.genesis.Hash.Short())
	case c.head.Hash != o.head.Hash || c.head.Height != o.head.Height:
		return fmt.Errorf("ledger: head %d %s, other chain has %d %s", c.head.Height, c.head.Hash.Short(),
			o.head.Height, o.head.Hash.Short())
	case !slices.Equal(c.bal, o.bal):
		return fmt.Errorf("ledger: balances %v, other chain has %v", c.Balances(), o.Balances())
	case !bytes.Equal(c.appendState(nil), o.appendState(nil)):
		return fmt.Errorf("ledger: transfer-ID windows differ from the other chain's")
	}
	return nil
}
