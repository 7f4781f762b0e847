package transport

import "errors"

// Sentinel errors returned (wrapped) by the transports of this package.
// Callers branch on them with errors.Is. They are shared by every transport
// in the package, so a caller need not know which one it holds.
var (
	// ErrClosed is returned by Send after Close, and by the network's
	// methods after the network was closed.
	ErrClosed = errors.New("transport: closed")
	// ErrUnknownPeer is returned for a peer id that is not a member, or for
	// a message addressed to the sender itself.
	ErrUnknownPeer = errors.New("transport: unknown peer")
	// ErrWrongSender is returned by Send for a message whose From is not
	// the endpoint's own id.
	ErrWrongSender = errors.New("transport: message From is not the local id")
	// ErrUnsendable is returned by Send for a message of a kind that never
	// travels between peers (PeerUp, or an undefined kind).
	ErrUnsendable = errors.New("transport: message kind cannot be sent")
)
