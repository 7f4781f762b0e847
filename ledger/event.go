package ledger

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventBlockInserted: a block was persisted and inserted. Block is the
	// block; From is the peer whose release carried it, or this node's own
	// id for a block it made (Local), or the peer that sent it by catch-up
	// (Fetched).
	EventBlockInserted EventKind = iota + 1
	// EventTransferCommitted: a Transfer call of this node succeeded.
	// Transfer and Block are set; Duplicate is true when the call repeated
	// an already committed transfer ID.
	EventTransferCommitted
	// EventTransferRejected: a Transfer call of this node failed. Transfer
	// and Err are set (e.g. ErrInsufficientFunds, ErrSelfTransfer).
	EventTransferRejected
	// EventFailed: the node received a block it could not verify or
	// persist and stopped taking transfers. Err says why.
	EventFailed
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case EventBlockInserted:
		return "block-inserted"
	case EventTransferCommitted:
		return "transfer-committed"
	case EventTransferRejected:
		return "transfer-rejected"
	case EventFailed:
		return "failed"
	}
	return "unknown"
}

// Event reports something that happened on a Node, for a UI or a log. See
// Config.OnEvent.
type Event struct {
	Kind      EventKind
	Block     Block
	From      string
	Local     bool
	Fetched   bool
	Transfer  Transfer
	Duplicate bool
	Err       error
}
