package lamportmutex

import "errors"

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotHeld is returned by Unlock when the lock is not held.
	ErrNotHeld = errors.New("lamportmutex: lock not held")
	// ErrLocked is returned by TryLock when another peer holds the lock or
	// has an earlier request, or another goroutine of this process holds or
	// waits for it.
	ErrLocked = errors.New("lamportmutex: locked by another holder")
	// ErrClosed is returned by every method of a closed Mutex.
	ErrClosed = errors.New("lamportmutex: mutex closed")
	// ErrPayloadTooLarge is returned by Unlock for a payload larger than the
	// Transport carries (Transport.MaxPayload); the lock stays held.
	ErrPayloadTooLarge = errors.New("lamportmutex: payload too large")
	// ErrTransport is the cause (wrapped with ErrClosed) returned by every
	// call after the Transport refused a message: a peer would wait forever
	// for it, so the Mutex stops rather than pretend.
	ErrTransport = errors.New("lamportmutex: the transport refused a message")
	// ErrConfig wraps every error New and NewMachine return for a bad
	// configuration.
	ErrConfig = errors.New("lamportmutex: invalid config")
	// ErrNotMember is returned by Machine.Step for a message whose sender is
	// not a peer of this machine or whose recipient is not this machine
	// (the latter with ErrViolation).
	ErrNotMember = errors.New("lamportmutex: message from or to a non-member")
	// ErrBadMessage is returned by Machine.Step for a message of unknown
	// kind (with ErrViolation).
	ErrBadMessage = errors.New("lamportmutex: malformed message")
	// ErrStale is returned by Machine.Step for a message meant for another
	// incarnation of this peer, or from a peer whose Hello has not arrived
	// yet (since this Machine started or since that peer's PeerUp): it was
	// sent before its sender knew of this incarnation, so it is ignored. It
	// is expected after restarts.
	ErrStale = errors.New("lamportmutex: message before the sender's hello")
	// ErrPeerDown is returned by Mutex.Send and Machine.Data for a peer
	// that has not come up (no PeerUp for it yet): it would ignore the
	// message. Handler.HandlePeerUp says when it comes.
	ErrPeerDown = errors.New("lamportmutex: peer not up")
	// ErrViolation is returned by Machine.Step for a message no honest
	// peer sends (see Machine.Step). A Mutex refuses it and quarantines the
	// sender's incarnation.
	ErrViolation = errors.New("lamportmutex: protocol violation")
	// ErrPeerBusy is returned by Mutex.Send when the Transport's queue for
	// a peer has no room for application data (ErrQueueFull): the peer, or
	// the link to it, does not keep up. Nothing is queued; try later.
	ErrPeerBusy = errors.New("lamportmutex: too much queued for the peer")
	// ErrQueueFull is wrapped by a Transport's Send when the bytes queued
	// for a peer would pass the transport's bound (see Transport).
	ErrQueueFull = errors.New("lamportmutex: transport queue full")
	// ErrRequested is returned by Machine.Request while a request is
	// already outstanding.
	ErrRequested = errors.New("lamportmutex: request already outstanding")
)
