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

// PendingLen returns how many received blocks wait for an earlier one, for
// tests.
func PendingLen(n *Node) int {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	return len(n.pending)
}
