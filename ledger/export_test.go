package ledger

import "github.com/lamportledger/lamportledger/lamportmutex"

// QueueLen returns how many transfers wait for the committer, for tests.
func QueueLen(n *Node) int {
	n.qmu.Lock()
	defer n.qmu.Unlock()
	return len(n.queue)
}

// TestKey and TestPubKeys give members deterministic keys in tests.
var (
	TestKey     = testKey
	TestPubKeys = testPubKeys
)

// PendingLen returns how many received blocks wait for an earlier one, for
// tests.
func PendingLen(n *Node) int {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	return len(n.pending)
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
