package ledger

// QueueLen returns how many transfers wait for the committer, for tests.
func QueueLen(n *Node) int {
	n.qmu.Lock()
	defer n.qmu.Unlock()
	return len(n.queue)
}

// PendingLen returns how many received blocks wait for an earlier one, for
// tests.
func PendingLen(n *Node) int {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	return len(n.pending)
}

// SetBatchCheck adds check to the checks of received batches, for tests
// that need a stand-in for block signatures. Call it before the node gets
// input.
func SetBatchCheck(n *Node, check func([]Block) error) { n.testHookCheckBatch = check }
