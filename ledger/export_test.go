package ledger

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
