package lamportmutex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Mutex is a distributed lock among a fixed group of peers, one Mutex per
// peer, using Lamport's algorithm over a Transport. It is held by the peer
// (the process), not by a goroutine: any goroutine may Unlock. Several
// goroutines of one process may Lock at once; they queue locally in arrival
// order, and one distributed request is outstanding per peer at a time.
//
// A Mutex starts no goroutine of its own. Its Machine runs to completion on
// whichever goroutine has something for it, under one lock: Lock, Unlock
// and Send on the caller's, a peer's message on the Transport's goroutine
// that delivers it, and a RELEASE that Unlock held back on a timer's (see
// Unlock; Close stops the timer). The Transport's Send never blocks, so nothing waits while that lock
// is held; the application's Handler runs outside it (see Handler).
type Mutex struct {
	cfg     Config
	log     *slog.Logger
	members map[string]bool
	stats   statsBox
	done    chan struct{} // closed once the Mutex stops
	closed  atomic.Bool   // set, under mu, just before done closes

	// cb makes the Handler's methods run one at a time, and none after
	// Close: Close sets muted under it.
	cb    sync.Mutex
	muted bool

	// Quarantine's requests, which may come while mu is held (from Trace),
	// and the incarnations they name: cur[peer] is set at each PeerUp the
	// Mutex acts on, before HandlePeerUp; a peer not in cur has not come up.
	qmu      sync.Mutex
	quar     map[string]quarRequest // per peer: the first request for its incarnation in cur
	cur      map[string]uint64
	qpending atomic.Bool // quar is not empty

	mu      sync.Mutex // guards what follows
	machine *Machine
	out     []Message         // what this step sends, in the Machine's order (see flush)
	held    []Message         // RELEASEs held back (see hold), in the Machine's order
	linger  *time.Timer       // sends what is held, releaseLinger after it is held
	batch   []Message         // flush's buffer for one Send
	waiters []*waiter         // local Lock and TryLock calls, in arrival order
	holder  *waiter           // the call that holds the lock, if any
	banned  map[string]uint64 // per quarantined peer: its incarnation that is current here
	traced  uint64            // the clock as last reported to Config.Trace
	failure error             // why the Mutex stopped, if not Close
}

// quarRequest is one Mutex.Quarantine call: the incarnation current when it
// was made, and why.
type quarRequest struct {
	inc   uint64
	cause error
}

// waiter is one Lock or TryLock call.
type waiter struct {
	try    bool
	start  time.Time
	result chan lockResult // buffered 1; written once, under mu
}

type lockResult struct {
	tok Token
	err error
}

// New starts a Mutex for cfg.ID and starts the Transport's delivery to it.
// Delivery begins before New returns, so cfg.Handler's methods may run
// before the caller has the *Mutex: a method that needs it must wait for
// it (the ledger's queue their work). New returns an error wrapping
// ErrConfig for a bad Config, and the Transport's error if it cannot
// start.
func New(cfg Config) (*Mutex, error) {
	ids, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	machine, err := NewMachine(cfg.ID, ids, cfg.Transport.Incarnation(), WithAlgorithm(cfg.Algorithm))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mutex{
		cfg:     cfg,
		log:     log.With("peer", cfg.ID),
		members: make(map[string]bool, len(ids)),
		done:    make(chan struct{}),
		machine: machine,
		banned:  map[string]uint64{},
		quar:    map[string]quarRequest{},
		cur:     map[string]uint64{},
	}
	for _, id := range ids {
		m.members[id] = true
	}
	m.stats.s.Sent = map[Kind]uint64{}
	m.stats.s.Received = map[Kind]uint64{}
	machine.AdvanceClock(cfg.StartClock)
	m.traced = machine.Clock()
	m.linger = time.AfterFunc(time.Hour, m.sendHeld)
	m.linger.Stop()
	if err := cfg.Transport.Start(m.deliver); err != nil {
		return nil, fmt.Errorf("lamportmutex: start the transport: %w", err)
	}
	return m, nil
}

// Lock blocks until this peer holds the lock, and returns the granted
// request's Token, a fencing token. If ctx ends first, Lock returns ctx's
// error; a grant that comes after is released at once, unless another Lock
// call of this process takes it over. After Close it returns ErrClosed.
func (m *Mutex) Lock(ctx context.Context) (Token, error) {
	return m.lock(ctx, false)
}

// TryLock takes the lock only if no one is ahead: it returns ErrLocked when
// another goroutine of this process holds or waits for the lock, or when
// another peer holds it or has an earlier request.
//
// When this peer's queue already holds another peer's request, TryLock
// returns ErrLocked at once and sends nothing: that request was stamped
// before any request this peer could make now, so it is ahead (or its
// RELEASE has not arrived here yet: the answer is as of what this peer has
// heard). Otherwise
// TryLock needs one round of messages to learn whether a request is on its
// way, and waits for it, up to ctx, like Lock. Under Ricart-Agrawala a peer
// keeps no queue of the others' requests, so it cannot learn that another
// is ahead: TryLock waits like Lock then.
func (m *Mutex) TryLock(ctx context.Context) (Token, error) {
	return m.lock(ctx, true)
}

func (m *Mutex) lock(ctx context.Context, try bool) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	w := &waiter{try: try, start: time.Now(), result: make(chan lockResult, 1)}
	m.lockState()
	switch {
	case m.closed.Load():
		m.unlockState()
		return Token{}, m.Err()
	case try && (m.holder != nil || len(m.waiters) > 0 || m.othersQueued()):
		m.unlockState()
		return Token{}, ErrLocked
	}
	m.waiters = append(m.waiters, w)
	m.request()
	m.settle()
	m.unlockState()
	select {
	case r := <-w.result:
		return r.tok, r.err
	case <-ctx.Done():
		// Withdraw; if the grant raced us, release it. Either way no peer
		// is left waiting on this call.
		m.lockState()
		m.cancel(w)
		m.settle()
		m.unlockState()
		return Token{}, ctx.Err()
	}
}

// othersQueued reports whether this peer, with no request of its own, has
// another peer's request in its queue. The state lock must be held.
func (m *Mutex) othersQueued() bool {
	if m.machine.Requesting() {
		return false
	}
	self := m.machine.ID()
	for _, t := range m.machine.Queue() {
		if t.ID != self {
			return true
		}
	}
	return false
}

// Unlock releases the lock, sending a copy of payload (which may be nil)
// with the RELEASE to every peer; each hands it to its Handler's HandleRelease
// before the release takes effect there. Unlock returns once the release is
// queued by the Transport, or held back (below); it never waits for the
// network.
//
// A RELEASE without payload, under Lamport's rules, goes out at once only
// to the peers whose request is queued here. To the others it is held back
// until this peer's next message to them (its next REQUEST, which then
// shares the RELEASE's write, or a REPLY when they ask for the lock), and
// at most about 200µs: none of them waits for it meanwhile, and a peer
// that takes the lock again at once sends one message per peer where it
// would send two. Until then, their State and TryLock still see this
// peer's request; Close sends what is held.
//
// It returns
// ErrNotHeld if the lock is not held, ErrPayloadTooLarge (still holding)
// for a payload above the Transport's MaxPayload, and ErrClosed after
// Close.
func (m *Mutex) Unlock(payload []byte) error {
	if limit := m.cfg.Transport.MaxPayload(); len(payload) > limit {
		return fmt.Errorf("%w: %d bytes, the transport carries at most %d; the lock is still held",
			ErrPayloadTooLarge, len(payload), limit)
	}
	payload = bytes.Clone(payload)
	m.lockState()
	defer m.unlockState()
	if m.closed.Load() {
		return m.stoppedErr()
	}
	if err := m.unlock(payload); err != nil {
		return err
	}
	m.settle()
	if m.closed.Load() { // the Transport refused the release
		return m.stoppedErr()
	}
	return nil
}

// Send queues a copy of payload for peer to, as a message of the application
// (Kind Data) carried on the same per-pair FIFO stream as the algorithm's
// messages; to's Mutex hands it to its Handler's HandleMessage. It is
// addressed to to's current incarnation: it is delivered unless that
// incarnation ends first (to's next HandlePeerUp here says it did). Send
// never waits. It returns ErrNotMember for a peer that is not another
// member, ErrPeerDown before to's first PeerUp, ErrPayloadTooLarge for a
// payload above the Transport's MaxPayload, ErrPeerBusy (queueing nothing)
// when the Transport's queue for to is too full for application data (see
// Transport), and ErrClosed after Close.
func (m *Mutex) Send(to string, payload []byte) error {
	if limit := m.cfg.Transport.MaxPayload(); len(payload) > limit {
		return fmt.Errorf("%w: %d bytes, the transport carries at most %d",
			ErrPayloadTooLarge, len(payload), limit)
	}
	payload = bytes.Clone(payload)
	m.lockState()
	defer m.unlockState()
	if m.closed.Load() {
		return m.stoppedErr()
	}
	msg, err := m.machine.Data(to, payload)
	if err != nil {
		return err
	}
	held, rest := m.heldFor(to)
	if err := m.cfg.Transport.Send(append(held, msg)...); err != nil {
		if errors.Is(err, ErrQueueFull) {
			return fmt.Errorf("%w: %s: %w", ErrPeerBusy, to, err)
		}
		m.fail(err)
		return m.stoppedErr()
	}
	m.held = rest
	for _, h := range held {
		m.sent(h)
	}
	m.sent(msg)
	return nil
}

// State is a snapshot of the algorithm's state at one peer.
type State struct {
	// Clock is the Lamport clock.
	Clock uint64
	// Queue is the request queue, first in line first.
	Queue []Token
	// Held reports whether this peer holds the lock.
	Held bool
	// Waiting counts local Lock and TryLock calls not yet granted.
	Waiting int
	// Missing lists the peers whose later message our request still waits
	// for (empty when no request is outstanding).
	Missing []string
}

// State returns a snapshot of the state machine. It works after Close too.
func (m *Mutex) State() State {
	m.lockState()
	defer m.unlockState()
	return State{
		Clock:   m.machine.Clock(),
		Queue:   m.machine.Queue(),
		Held:    m.machine.Held(),
		Waiting: len(m.waiters),
		Missing: m.machine.Missing(),
	}
}

// Quarantine reports that the current incarnation of peer sent bad input
// that the application found outside the Handler's methods (for example
// while checking what it fetched): the Mutex quarantines that incarnation,
// as for an error from Handler.HandleMessage. It calls
// Transport.Quarantine(peer, incarnation, cause) and ignores everything
// further from that incarnation until the Transport reports another one
// (PeerUp). The incarnation is the one whose PeerUp the Mutex acted on
// last, before it called Handler.HandlePeerUp for it. Quarantine never
// waits for the network and may be called from any goroutine, the
// Handler's methods included. It is a no-op for this peer, a non-member, a
// peer that has not come up, and after Close.
func (m *Mutex) Quarantine(peer string, cause error) {
	if !m.members[peer] || peer == m.cfg.ID {
		return
	}
	m.qmu.Lock()
	inc, up := m.cur[peer]
	if r, ok := m.quar[peer]; up && (!ok || r.inc != inc) {
		m.quar[peer] = quarRequest{inc, cause}
		m.qpending.Store(true)
	}
	m.qmu.Unlock()
	if up && m.mu.TryLock() { // else the holder of mu applies it (unlockState)
		m.unlockState()
	}
}

// lockState takes mu and applies pending Quarantine requests; unlockState
// applies those that came meanwhile and releases mu. Every step of the
// Mutex runs between the two, so a request takes effect before the next
// step. A request made while mu is held is left to its holder: after
// releasing mu, unlockState looks again, and applies one that came just
// then unless mu has another holder, who will.
func (m *Mutex) lockState() {
	m.mu.Lock()
	m.applyQuarantines()
}

func (m *Mutex) unlockState() {
	for {
		m.applyQuarantines()
		m.mu.Unlock()
		if !m.qpending.Load() || !m.mu.TryLock() {
			return
		}
	}
}

// applyQuarantines carries out Quarantine's requests whose incarnation is
// still current.
func (m *Mutex) applyQuarantines() {
	if !m.qpending.Load() {
		return
	}
	m.qmu.Lock()
	q := m.quar
	m.quar = map[string]quarRequest{}
	m.qpending.Store(false)
	m.qmu.Unlock()
	if m.closed.Load() {
		return
	}
	for _, id := range m.machine.Members() { // in a fixed order
		r, ok := q[id]
		if !ok {
			continue
		}
		if inc, up := m.machine.PeerIncarnation(id); !up || inc != r.inc {
			m.log.Debug("dropped a quarantine request for an incarnation that is gone", "peer", id, "incarnation", r.inc, "err", r.cause)
			continue
		}
		m.quarantine(id, fmt.Errorf("reported by the application: %w", r.cause))
	}
}

// Stats returns the Mutex's counters. It works after Close too.
func (m *Mutex) Stats() Stats { return m.stats.snapshot() }

// Done returns a channel that is closed once the Mutex has stopped: after
// Close, or when the Transport failed (Err says why).
func (m *Mutex) Done() <-chan struct{} { return m.done }

// Err returns nil while the Mutex runs. Once it has stopped it returns
// ErrClosed, wrapping the cause (an ErrTransport) if the Mutex stopped by
// itself.
func (m *Mutex) Err() error {
	if !m.closed.Load() {
		return nil
	}
	m.lockState()
	defer m.unlockState()
	return m.stoppedErr()
}

// Close withdraws any outstanding request so that no peer waits on this
// one, fails every waiting Lock with ErrClosed, and waits until a Handler
// method that is running returns. Then it waits, up to ctx, for the
// Transport to have delivered what the Mutex sent (Transport.Flush), and
// returns ctx's error if that did not happen in time. It does not close
// the Transport. A second Close, or a Close after the Mutex stopped by
// itself, returns nil once a Handler method that is running returns. Close
// must not be called from a Handler method.
//
// Close does not release a lock that a caller holds (Unlock was not
// called): a release without the holder's payload would let the next
// holder go ahead without the holder's update. The peers then treat this
// peer as crashed: its request stays first in their queues until its next
// incarnation comes up (PeerUp), which the application hears of through
// Handler.HandlePeerUp. Unlock before Close. (A grant that no Lock call has
// returned yet, say because its ctx ended just then, is released.)
func (m *Mutex) Close(ctx context.Context) error {
	m.lockState()
	stopped := m.closed.Load() // by another Close, or by itself
	if !stopped {
		m.shutdown()
	}
	m.unlockState()
	m.cb.Lock() // a Handler method that is running returns; none starts after
	m.muted = true
	m.cb.Unlock()
	if stopped {
		return nil
	}
	if err := m.cfg.Transport.Flush(ctx); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("lamportmutex: close: what was sent is not delivered: %w", err)
	}
	return nil
}

// deliver is the Transport's entry: it handles one message, on the
// Transport's goroutine.
func (m *Mutex) deliver(msg Message) {
	if !m.members[msg.From] || msg.From == m.cfg.ID {
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped a message from a non-member", "msg", msg.String())
		return
	}
	m.lockState()
	if !m.admit(msg) {
		m.unlockState()
		return
	}
	switch {
	case msg.Kind == Data:
		m.received(msg, m.machine.Clock())
		m.unlockState()
		if h := m.cfg.Handler; h != nil {
			m.callback(msg, func() error { return h.HandleMessage(msg.From, msg.Payload) })
		}
		return
	case msg.Kind == PeerDown:
		m.received(msg, m.machine.Clock())
		m.unlockState()
		if h := m.cfg.Handler; h != nil {
			m.callback(msg, func() error { h.HandlePeerDown(msg.From); return nil })
		}
		return
	case msg.Kind == Release && msg.Payload != nil && m.cfg.Handler != nil:
		m.unlockState()
		if !m.callback(msg, func() error { return m.cfg.Handler.HandleRelease(msg.From, msg.Payload) }) {
			return
		}
		m.lockState()
		if !m.admit(msg) { // a Quarantine may have come meanwhile
			m.unlockState()
			return
		}
	}
	before := m.machine.Clock()
	out, err := m.machine.Step(msg)
	if err != nil { // unreachable after admit
		m.unlockState()
		panic(fmt.Sprintf("lamportmutex: Step refused %v that Accepts took: %v", msg, err))
	}
	m.received(msg, before)
	m.send(out)
	if msg.Kind == PeerUp {
		m.qmu.Lock()
		m.cur[msg.From] = msg.Incarnation
		m.qmu.Unlock()
	}
	m.settle()
	m.unlockState()
	if h := m.cfg.Handler; h != nil && msg.Kind == PeerUp {
		m.callback(msg, func() error { h.HandlePeerUp(msg.From); return nil })
	}
}

// callback runs f, the Handler's handling of msg, outside mu and one
// at a time, unless the Mutex stopped or (but for a PeerUp) msg's sender
// was quarantined before msg's turn came. An error quarantines the sender.
// It reports whether f ran and accepted msg.
func (m *Mutex) callback(msg Message, f func() error) bool {
	m.cb.Lock()
	// An earlier Handler method may have closed the Mutex or quarantined the
	// sender while msg waited for its turn. (A PeerUp is still reported:
	// the application learns of the restart even if it already refused
	// the new incarnation.)
	m.lockState()
	_, banned := m.banned[msg.From]
	gone := m.muted || m.closed.Load() || (banned && msg.Kind != PeerUp)
	m.unlockState()
	if gone {
		m.cb.Unlock()
		return false
	}
	err := f()
	m.cb.Unlock()
	if err == nil {
		return true
	}
	m.stats.update(func(s *Stats) { s.HandlerErrors++ })
	m.lockState()
	defer m.unlockState()
	if !m.closed.Load() {
		m.quarantine(msg.From, fmt.Errorf("the application refused %v: %w", msg, err))
	}
	return false
}

// admit reports whether msg is to be acted on: the Mutex runs, the sender's
// incarnation is not quarantined, and the Machine accepts it. A protocol
// violation quarantines the sender.
func (m *Mutex) admit(msg Message) bool {
	if m.closed.Load() {
		return false
	}
	if inc, ok := m.banned[msg.From]; ok {
		if msg.Kind != PeerUp || msg.Incarnation == inc {
			m.stats.update(func(s *Stats) { s.Dropped++ })
			m.log.Debug("ignored a message from a quarantined incarnation", "msg", msg.String())
			return false
		}
		// Another incarnation: a restart. Whether it is older than the
		// quarantined one is the Transport's to judge (see
		// Transport.Quarantine).
		delete(m.banned, msg.From)
	}
	switch err := m.machine.Accepts(msg); {
	case err == nil:
		return true
	case errors.Is(err, ErrStale): // expected after a restart
		m.stats.update(func(s *Stats) { s.Stale++ })
		m.log.Debug("ignored a message meant for an earlier incarnation, or sent before the sender's hello", "msg", msg.String())
	case errors.Is(err, ErrViolation):
		m.quarantine(msg.From, err)
	default: // a non-member, checked before
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped message", "msg", msg.String(), "err", err)
	}
	return false
}

// quarantine refuses the current incarnation of peer: the Transport ends
// its session, and the Mutex ignores it until another incarnation comes up.
// Before peer's first PeerUp there is no incarnation to name; the input is
// dropped.
func (m *Mutex) quarantine(peer string, cause error) {
	if _, ok := m.banned[peer]; ok {
		return
	}
	inc, up := m.machine.PeerIncarnation(peer)
	if !up {
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped bad input from a peer not yet up", "from", peer, "err", cause)
		return
	}
	m.banned[peer] = inc
	_, m.held = m.heldFor(peer)
	m.stats.update(func(s *Stats) { s.Quarantined++ })
	m.log.Warn("peer quarantined", "peer", peer, "incarnation", inc, "err", cause)
	m.cfg.Transport.Quarantine(peer, inc, cause)
}

// send queues msgs, a step's output, for flush.
func (m *Mutex) send(msgs []Message) {
	m.out = append(m.out, msgs...)
}

// releaseLinger is how long a RELEASE may be held back (see hold).
const releaseLinger = 200 * time.Microsecond

// hold queues msgs, the RELEASE of an Unlock without payload, to go out
// with the step to every peer whose request is queued here. The others do
// not wait for it: a peer that asks later gets it in front of our REPLY.
// So for them it is held back until this peer's next message to them (its
// next REQUEST, say, which then goes in the same write), or for
// releaseLinger, whichever comes first. Holding a message back is a delay
// on its FIFO stream, which the algorithm tolerates like any other; a
// REPLY is never sent before the RELEASE held for its peer, so no peer
// waits on a held one for longer than it waits for this peer's REPLY.
func (m *Mutex) hold(msgs []Message) {
	queue := m.machine.Queue()
	for _, msg := range msgs {
		if slices.ContainsFunc(queue, func(t Token) bool { return t.ID == msg.To }) {
			m.out = append(m.out, msg)
			continue
		}
		if len(m.held) == 0 {
			m.linger.Reset(releaseLinger)
		}
		m.held = append(m.held, msg)
	}
}

// heldFor splits what is held into what is for peer and the rest.
func (m *Mutex) heldFor(peer string) (mine, rest []Message) {
	for _, h := range m.held {
		if h.To == peer {
			mine = append(mine, h)
		} else {
			rest = append(rest, h)
		}
	}
	return mine, rest
}

// sendHeld sends everything held back; the linger timer runs it.
func (m *Mutex) sendHeld() {
	m.lockState()
	m.out = append(m.held, m.out...)
	m.held = nil
	m.settle()
	m.unlockState()
}

// flush hands what the step queued to the Transport: one Send per peer,
// with what is held for that peer in front, so that a step's messages to
// one peer go in one write. A peer whose queue is full does not read what
// it is sent: it loses its session, as for bad input. Any other refusal
// means the Transport failed: a message is lost, so the peers' queues can
// no longer be trusted, and the Mutex stops.
func (m *Mutex) flush() {
	out := m.out
	m.out = nil
	if len(out) == 0 || m.closed.Load() && m.failure != nil {
		return
	}
	defer func() { clear(out); m.out = out[:0] }() // the next step's buffer
	var refused map[string]bool
	for i, msg := range out {
		if slices.ContainsFunc(out[:i], func(x Message) bool { return x.To == msg.To }) {
			continue // sent with the first message for its peer
		}
		held, rest := m.heldFor(msg.To)
		m.held = rest
		batch := append(m.batch[:0], held...)
		for _, x := range out[i:] {
			if x.To == msg.To {
				batch = append(batch, x)
			}
		}
		err := m.cfg.Transport.Send(batch...)
		m.batch = batch
		switch {
		case err == nil:
			for _, h := range held {
				m.sent(h)
			}
		case errors.Is(err, ErrQueueFull):
			m.stats.update(func(s *Stats) { s.SendErrors += uint64(len(batch)) })
			m.quarantine(msg.To, fmt.Errorf("it does not read what it is sent: %w", err))
			if refused == nil {
				refused = map[string]bool{}
			}
			refused[msg.To] = true
		default:
			m.stats.update(func(s *Stats) { s.SendErrors += uint64(len(batch)) })
			for _, x := range out { // what the Transport took before it failed
				if !refused[x.To] && slices.ContainsFunc(out[:i], func(y Message) bool { return y.To == x.To }) {
					m.sent(x)
				}
			}
			m.fail(fmt.Errorf("send %v: %w", batch[0], err))
			return
		}
	}
	for _, msg := range out {
		if !refused[msg.To] {
			m.sent(msg)
		}
	}
}

// fail stops the Mutex because the Transport refused a message.
func (m *Mutex) fail(err error) {
	if m.closed.Load() {
		return
	}
	m.failure = fmt.Errorf("%w: %w", ErrTransport, err)
	m.log.Error("the transport refused a message; the mutex stops", "err", err)
	m.stop()
}

// stoppedErr is the error for calls after the Mutex stopped: ErrClosed,
// with the cause if the Mutex stopped by itself.
func (m *Mutex) stoppedErr() error {
	if m.failure != nil {
		return fmt.Errorf("%w: %w", ErrClosed, m.failure)
	}
	return ErrClosed
}

// received counts and traces a message acted on; before is the clock
// before the Machine handled it.
func (m *Mutex) received(msg Message, before uint64) {
	m.stats.update(func(s *Stats) { s.Received[msg.Kind]++ })
	m.trace(Event{Message: msg, Before: before, Clock: receiveClock(before, msg)})
}

// sent counts and traces a message the Transport took. The Machine stamps
// what one step sends in the order it ticks, so the clock right after a
// send is the highest stamp so far (a resent REQUEST keeps its old one).
func (m *Mutex) sent(msg Message) {
	m.stats.update(func(s *Stats) { s.Sent[msg.Kind]++ })
	m.trace(Event{Sent: true, Message: msg, Before: m.traced, Clock: max(m.traced, msg.Clock)})
}

// trace hands ev to Config.Trace and remembers its clock.
func (m *Mutex) trace(ev Event) {
	m.traced = ev.Clock
	if t := m.cfg.Trace; t != nil {
		t(ev)
	}
}

// settle finishes a step: it grants the lock to the first local waiter if
// the Machine holds it, settles TryLock calls that cannot win, hands what
// the step sends to the Transport, and reports a change of the clock that
// no message carried (see Event).
func (m *Mutex) settle() {
	m.grant()
	m.flush()
	if c := m.machine.Clock(); c != m.traced {
		m.trace(Event{Before: m.traced, Clock: c})
	}
}

// request makes sure a distributed request is outstanding while callers
// wait.
func (m *Mutex) request() {
	if len(m.waiters) == 0 || m.holder != nil || m.machine.Requesting() {
		return
	}
	out, err := m.machine.Request()
	if err != nil { // guarded above
		panic(fmt.Sprintf("lamportmutex: request while none is outstanding: %v", err))
	}
	m.send(out)
}

// cancel gives up w: it leaves the local queue, or, if it was granted
// meanwhile, releases the lock. The distributed request stays outstanding
// when no other caller wants it: it is released as soon as it is granted
// (see grant), and a later Lock takes it over. So however many Lock calls
// give up while a peer is cut off, what is queued for that peer stays one
// REQUEST (and at most one RELEASE), and nothing more waits on the peers
// than a withdrawal would have: no peer can enter while one is cut off.
func (m *Mutex) cancel(w *waiter) {
	if m.closed.Load() {
		return
	}
	if m.holder == w {
		if err := m.unlock(nil); err != nil {
			panic(fmt.Sprintf("lamportmutex: release a grant whose caller gave up: %v", err))
		}
		return
	}
	for i, x := range m.waiters {
		if x == w {
			m.waiters = append(m.waiters[:i], m.waiters[i+1:]...)
			return
		}
	}
}

// unlock releases the lock held by the process.
func (m *Mutex) unlock(payload []byte) error {
	if m.holder == nil {
		return ErrNotHeld
	}
	out, err := m.machine.Release(payload)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	m.holder = nil
	if len(payload) == 0 && m.cfg.Algorithm == Lamport {
		m.hold(out)
	} else {
		m.send(out)
	}
	m.request() // the next local caller, if any, requests afresh
	return nil
}

// grant hands the lock to the first local waiter once the Machine holds it,
// or releases it at once if every caller gave up meanwhile, and settles
// TryLock calls that cannot win.
func (m *Mutex) grant() {
	if m.holder != nil || m.closed.Load() {
		return
	}
	switch {
	case m.machine.Held() && len(m.waiters) == 0:
		out, err := m.machine.Release(nil)
		if err != nil {
			panic(fmt.Sprintf("lamportmutex: release a grant nobody waits for: %v", err))
		}
		m.send(out)
	case len(m.waiters) == 0:
	case m.machine.Held():
		w := m.waiters[0]
		m.waiters = m.waiters[1:]
		m.holder = w
		tok, _ := m.machine.Own()
		wait := time.Since(w.start)
		m.stats.update(func(s *Stats) {
			s.Entries++
			s.WaitTotal += wait
			s.WaitMax = max(s.WaitMax, wait)
		})
		w.result <- lockResult{tok: tok}
	case m.waiters[0].try && m.machine.Behind():
		w := m.waiters[0]
		m.waiters = m.waiters[1:]
		w.result <- lockResult{err: ErrLocked}
		if len(m.waiters) == 0 {
			// Behind means every peer has answered: they are reachable, and
			// the withdrawal lets them go ahead at once.
			out, err := m.machine.Release(nil)
			if err != nil {
				panic(fmt.Sprintf("lamportmutex: withdraw a request that is behind: %v", err))
			}
			m.send(out)
		}
	}
}

// shutdown, on Close, tells the peers we no longer want the lock, unless a
// caller holds it, and stops.
func (m *Mutex) shutdown() {
	if m.holder != nil {
		select {
		case <-m.holder.result:
			// The grant never reached its caller (its ctx ended, or it had
			// not run yet): nobody holds the lock, so it is released below,
			// and a caller still waiting gets ErrClosed in its place.
			m.holder.result <- lockResult{err: ErrClosed}
			m.holder = nil
		default:
		}
	}
	m.linger.Stop()
	m.out = append(m.held, m.out...)
	m.held = nil
	if m.holder != nil {
		m.log.Warn("closed while the lock is held: not released; peers wait for this peer's next incarnation")
	} else {
		m.send(m.machine.Leave())
	}
	m.settle()
	m.stop()
}

// stop fails every waiter and marks the Mutex stopped, once.
func (m *Mutex) stop() {
	if m.closed.Load() {
		return
	}
	m.closed.Store(true)
	m.linger.Stop()
	m.held = nil
	err := m.stoppedErr()
	for _, w := range m.waiters {
		w.result <- lockResult{err: err}
	}
	m.waiters = nil
	m.holder = nil
	close(m.done)
}
