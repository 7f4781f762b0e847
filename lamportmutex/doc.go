// Package lamportmutex is Lamport's distributed mutual exclusion algorithm
// (Lamport, "Time, Clocks, and the Ordering of Events in a Distributed
// System", 1978): a lock among a fixed group of peers with no central
// server.
//
// # The algorithm
//
// Every peer keeps a Lamport clock and a queue of requests ordered by
// Token, that is by (clock, peer id). To take the lock a peer stamps a
// request with its clock, queues it and sends REQUEST to every peer; each
// queues it and answers with a REPLY. The peer enters when its request is
// first in its queue and it has received, from every other peer, a message
// stamped later than its request. To leave it removes its request and sends
// RELEASE; each peer removes it from its queue. That is 3(N-1) messages per
// entry, and a hand-off costs one message delay. It relies on channels that
// are reliable and FIFO per pair of peers, which is the contract of
// Transport.
//
// Config.Algorithm selects Ricart and Agrawala's refinement instead: a peer
// holds back its REPLY while it holds the lock or has the earlier request,
// and sends it on release, so no RELEASE is needed: 2(N-1) messages per
// entry. See RicartAgrawala for how it differs here.
//
// # The pieces
//
//   - Machine is the algorithm as a pure, deterministic state machine: no
//     goroutines, no clocks, no I/O. Request, Release and Step return the
//     messages to send. Simulations and model checkers drive it directly.
//   - Mutex drives one Machine over a Transport: Lock, TryLock, Unlock,
//     Close, State and Stats. It starts no goroutine of its own: each step
//     runs to completion on the goroutine that has something for it (the
//     caller's, the Transport's delivering a message, or a timer's sending a
//     RELEASE that Unlock held back). Lock returns the granted
//     Token, a fencing token. Any number of goroutines may call Lock; they
//     queue locally, with one distributed request per peer at a time.
//   - Transport carries the messages; its documentation states the whole
//     contract. Package transport has a TCP and an in-process implementation.
//   - Handler is the application's side of a Mutex, one interface given
//     in Config: it handles the payloads of other peers' releases before
//     they take effect, and hears of peers coming up and going down.
//     Send and Handler.HandleMessage are an application channel beside the
//     algorithm: messages of the application's own (DATA) on the same
//     per-pair FIFO streams, addressed to incarnations like the rest. The
//     ledger catches up on missed blocks with them.
//
// # Guarantees
//
// With every peer up and a Transport that keeps its contract:
//
//   - Mutual exclusion: at most one peer holds the lock.
//   - Fairness: requests are granted in Token order, so the Tokens of
//     successive grants strictly increase.
//   - Liveness: every request is granted once the peers before it release.
//   - Update before release: a payload given to Unlock reaches every peer,
//     and its Handler.HandleRelease runs, before that peer treats the release as
//     done; so the next holder has handled every earlier holder's payload.
//     (A peer that is not entering may handle payloads of different holders
//     in an order other than the grants'; each holder's own arrive in order.)
//
// The tests check these after every step of seeded simulations and of an
// exhaustive exploration of small groups, and show that the checks catch a
// broken entry rule and a link that reorders. A seeded simulation with one
// member sending arbitrary messages checks them among the honest members,
// and shows that the check catches clocks that wrap.
//
// # Failures
//
// The algorithm needs a reply from every peer, so while any peer is down
// nobody can take the lock: Lock waits (and honours its ctx), and
// Mutex.State reports which peers a request still waits for. A peer that
// comes back as a new incarnation, a restarted process, is reported by its
// Transport with a PeerUp message. The others then drop its old request (a
// holder that died has released; whatever it held is the application's to
// recover, and Handler.HandlePeerUp tells it when, before any grant that the
// restart allows) and resend their own outstanding requests to it, after a HELLO
// carrying their clock. Every message names the incarnation of its receiver
// that its sender addresses, and a Machine ignores messages meant for an
// earlier incarnation of itself, or sent before the sender's HELLO: they
// were sent before the sender knew of the restart. A restarted Machine
// stamps no request before it has a HELLO from every peer, so its requests
// order after every request queued anywhere. Mutual exclusion and update
// before release hold across any number of restarts; the grant order (the
// fencing token) holds across restarts as long as a restarted peer's HELLOs
// come from peers that were not themselves restarting at the time.
//
// # Trust
//
// Peers are authenticated by the Transport (Message.From names the real
// sender), but a member may be faulty. What a faulty member can do is
// stall: the algorithm needs an answer from every peer, so it can withhold
// one or hold the lock for good. Pushing the clocks to MaxClock, where
// requests are never granted, takes it nearly 2^31 accepted messages: a
// message more than MaxClockStep (2^32) above its receiver's clock is a
// protocol violation. A stall can outlast the faulty behaviour: one
// accepted jump of nearly MaxClockStep leaves the receiver's clock that
// far ahead of the others', and a peer more than MaxClockStep behind it,
// one that has not caught up or one that restarts with an older clock, the
// faulty member's own next incarnation included, refuses that receiver's
// messages and quarantines it (see MaxClockStep). The same limit holds
// among honest peers: one whose clock lags the others' by more than 2^32
// events, such as a ledger client whose data folder was lost rejoining a
// cluster past 4 billion mutex events, quarantines its peers. That is a
// stall, never a safety issue. What a faulty member cannot do is make two
// honest peers hold the lock at once: the entry rule between two honest
// peers rests only on the messages between them, and no clock wraps (a
// Clock above MaxClock is refused; local clocks saturate, see Machine). Nor
// can it remove another peer's request, or make a peer apply a release
// payload it never could have sent: under Lamport's algorithm a RELEASE
// with a payload from a peer with no queued request is refused. Under
// Lamport's algorithm it cannot make a peer queue answers without bound
// either: a REQUEST from a peer whose request is queued is refused. Under
// Ricart-Agrawala a REQUEST from a peer whose request waits for our REPLY
// is refused, but a request answered at once leaves no trace, so a peer
// that floods REQUESTs while this one is not requesting gets a REPLY for
// each (see Machine.Step).
//
// Bad input costs its sender its session. A protocol violation
// (ErrViolation: a clock above MaxClock or more than MaxClockStep above
// the receiver's, a message of unknown kind or addressed to another
// member, a payload with no request behind it, a request while the
// sender's previous one is outstanding), or
// an error from Handler.HandleRelease or Handler.HandleMessage, is refused (a
// refused RELEASE does not take effect) and logged in one line naming the
// sender, and that incarnation of the sender is quarantined:
// Transport.Quarantine ends its session, and the Mutex ignores it until
// another incarnation comes up. Mutex.Quarantine does the same for bad input
// the application finds later. What a peer can make a Mutex hold is
// bounded: its request in the queue. What is queued for a peer is bounded
// by the Transport (see Transport): application data past half the bound
// is refused (ErrPeerBusy), and a peer that lets the algorithm's own
// messages fill the rest does not read, and is quarantined.
//
// # Example
//
//	mu, err := lamportmutex.New(lamportmutex.Config{
//		ID: "1", Peers: []string{"1", "2", "3"}, Transport: tr,
//	})
//	tok, err := mu.Lock(ctx)
//	// ... the critical section; tok is a fencing token ...
//	err = mu.Unlock(nil)
package lamportmutex
