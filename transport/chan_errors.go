package transport

import (
	"errors"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// Sentinel errors returned (wrapped) by the transports of this package.
// Callers branch on them with errors.Is. They are shared by every transport
// in the package, so a caller need not know which one it holds.
var (
	// ErrClosed is returned by Send and Flush after Close, and by the
	// network's methods after the network was closed. It wraps
	// lamportmutex.ErrClosed, as the Transport contract asks.
	ErrClosed error = closedSentinel{}
	// ErrUnknownPeer is returned for a peer id that is not a member, or for
	// a message addressed to the sender itself.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrWrongSender is returned by Send for a message whose From is not
	// the endpoint's own id.
	ErrWrongSender = errors.New("transport: message From is not the local id")
	// ErrUnsendable is returned by Send for a message of a kind that never
	// travels between peers (PeerUp, or an undefined kind).
	ErrUnsendable = errors.New("transport: message kind cannot be sent")
	// ErrMixedPeers is returned by Send for a call whose messages are not
	// all for one peer.
	ErrMixedPeers = errors.New("transport: one Send names several peers")
)

// closedSentinel is ErrClosed: its own text, and lamportmutex.ErrClosed for
// errors.Is.
type closedSentinel struct{}

func (closedSentinel) Error() string { return "transport: closed" }
func (closedSentinel) Unwrap() error { return lamportmutex.ErrClosed }
