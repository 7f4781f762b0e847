package lamportmutex

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Mutex is a distributed lock among a fixed group of peers, one Mutex per
// peer, using Lamport's algorithm over a Transport. It is held by the peer
// (the process), not by a goroutine: any goroutine may Unlock. Several
// goroutines of one process may Lock at once; they queue locally in arrival
// order, and one distributed request is outstanding per peer at a time.
//
// One goroutine, started by New and stopped by Close, owns the state machine:
// it reads the Transport, queues what the Machine says to send, and wakes
// waiters. One more goroutine per peer hands that peer's messages to the
// Transport, so a peer that does not read never stalls the Mutex.
type Mutex struct {
	cfg     Config
	log     *slog.Logger
	members map[string]bool
	cmds    chan func(*driver)
	closing chan struct{}
	done    chan struct{}
	once    sync.Once
	stats   statsBox
	failure error // why the driver stopped, if not Close; set before done closes
	// failed receives the first message the Transport refused.
	failed chan error

	// Quarantine's requests, for the driver, and the incarnations they
	// name. The driver sets cur[peer] at each PeerUp it acts on, before
	// OnPeerUp; a peer not in cur has not come up.
	qmu   sync.Mutex
	quar  map[string]quarRequest // per peer: the first request for its incarnation in cur
	cur   map[string]uint64
	qwake chan struct{} // buffered 1: quar grew
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
	result chan lockResult // buffered 1; written once by the driver
}

type lockResult struct {
	tok Token
	err error
}

// New starts a Mutex for cfg.ID. It returns an error wrapping ErrConfig for
// a bad Config.
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
		cmds:    make(chan func(*driver)),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		failed:  make(chan error, 1),
		quar:    map[string]quarRequest{},
		cur:     map[string]uint64{},
		qwake:   make(chan struct{}, 1),
	}
	for _, id := range ids {
		m.members[id] = true
	}
	m.stats.s.Sent = map[Kind]uint64{}
	m.stats.s.Received = map[Kind]uint64{}
	machine.AdvanceClock(cfg.StartClock)
	limit := cfg.OutboxLimit
	if limit == 0 {
		limit = DefaultOutboxLimit
	}
	d := &driver{m: m, machine: machine, outboxes: map[string]*outbox{}, banned: map[string]uint64{}, traced: machine.Clock()}
	for _, id := range ids {
		if id != cfg.ID {
			d.outboxes[id] = newOutbox(limit)
		}
	}
	go d.run()
	return m, nil
}

// Lock blocks until this peer holds the lock, and returns the granted
// request's Token, a fencing token. If ctx ends first, Lock withdraws the
// request (no peer waits on it) and returns ctx's error; a grant that races
// the cancellation is released at once. After Close it returns ErrClosed.
func (m *Mutex) Lock(ctx context.Context) (Token, error) {
	return m.lock(ctx, false)
}

// TryLock takes the lock only if no one is ahead: it returns ErrLocked when
// another goroutine of this process holds or waits for the lock, or when
// another peer holds it or has an earlier request. It still needs one round
// of messages to learn that, so it waits, up to ctx, like Lock.
func (m *Mutex) TryLock(ctx context.Context) (Token, error) {
	return m.lock(ctx, true)
}

func (m *Mutex) lock(ctx context.Context, try bool) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, err
	}
	w := &waiter{try: try, start: time.Now(), result: make(chan lockResult, 1)}
	if err := m.do(ctx, func(d *driver) { d.enqueue(w) }); err != nil {
		return Token{}, err
	}
	select {
	case r := <-w.result:
		return r.tok, r.err
	case <-ctx.Done():
		// Withdraw; if the grant raced us, the driver releases it. Either
		// way no peer is left waiting on this call.
		if err := m.do(context.Background(), func(d *driver) { d.cancel(w) }); err != nil {
			return Token{}, err
		}
		return Token{}, ctx.Err()
	case <-m.done:
		return Token{}, m.stopped()
	}
}

// Unlock releases the lock, sending a copy of payload (which may be nil)
// with the RELEASE to every peer; each hands it to its Config.OnRelease before the
// release takes effect there. Unlock returns once the release is queued for
// the Transport (the Mutex never waits on a Transport whose queue is full;
// Close still hands over what is queued). It returns ErrNotHeld if the lock
// is not held, ErrPayloadTooLarge (still holding) for a payload the
// Transport cannot carry, and ErrClosed after Close.
func (m *Mutex) Unlock(payload []byte) error {
	if lim, ok := m.cfg.Transport.(PayloadLimiter); ok && len(payload) > lim.MaxPayload() {
		return fmt.Errorf("%w: %d bytes, the transport carries at most %d; the lock is still held",
			ErrPayloadTooLarge, len(payload), lim.MaxPayload())
	}
	payload = bytes.Clone(payload)
	errc := make(chan error, 1)
	if err := m.do(context.Background(), func(d *driver) { errc <- d.unlock(payload) }); err != nil {
		return err
	}
	return <-errc
}

// Send queues a copy of payload for peer to, as a message of the application
// (Kind Data) carried on the same per-pair FIFO stream as the algorithm's
// messages; to's Mutex hands it to its Config.OnMessage. It is addressed to
// to's current incarnation: it is delivered unless that incarnation ends
// first (to's next OnPeerUp here says it did). Send returns once the
// message is queued, without waiting for the Transport. It returns
// ErrNotMember for a peer that is not another member, ErrPeerDown before
// to's first PeerUp, ErrPayloadTooLarge for a payload the Transport cannot
// carry, ErrPeerBusy (queueing nothing) when what is queued for to would
// exceed Config.OutboxLimit, and ErrClosed after Close. Send must not be
// called from the Mutex's callbacks (OnRelease, OnMessage, OnPeerUp,
// Trace).
func (m *Mutex) Send(ctx context.Context, to string, payload []byte) error {
	if lim, ok := m.cfg.Transport.(PayloadLimiter); ok && len(payload) > lim.MaxPayload() {
		return fmt.Errorf("%w: %d bytes, the transport carries at most %d",
			ErrPayloadTooLarge, len(payload), lim.MaxPayload())
	}
	payload = bytes.Clone(payload)
	var err error
	if derr := m.do(ctx, func(d *driver) {
		var msg Message
		if msg, err = d.machine.Data(to, payload); err != nil {
			return
		}
		if !d.outboxes[to].offer(msg) {
			err = fmt.Errorf("%w: %s", ErrPeerBusy, to)
			return
		}
		d.sent(msg)
	}); derr != nil {
		return derr
	}
	return err
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

// State returns a snapshot of the state machine, or ErrClosed.
func (m *Mutex) State(ctx context.Context) (State, error) {
	var s State
	err := m.do(ctx, func(d *driver) { s = d.state() })
	return s, err
}

// Quarantine reports that the current incarnation of peer sent bad input
// that the application found outside the Mutex's callbacks (for example
// while checking what it fetched): the Mutex quarantines that incarnation,
// as for an error from Config.OnMessage. It calls
// Transport.Quarantine(peer, incarnation, cause) and ignores everything
// further from that incarnation until the Transport reports another one
// (PeerUp). The incarnation is the one current when Quarantine is called:
// the one whose PeerUp the Mutex acted on last, before it called
// Config.OnPeerUp for it. If another incarnation of peer comes up before
// the request takes effect, the request is dropped: the new incarnation
// did not send the bad input. The request takes effect before the Mutex
// handles its next message (called from a callback: once the callback
// returns) and before any Mutex method called after it returns.
// Quarantine never blocks and may be called from any goroutine, the
// callbacks included. It is a no-op for this peer, a non-member, a peer
// that has not come up, and after Close.
func (m *Mutex) Quarantine(peer string, cause error) {
	if !m.members[peer] || peer == m.cfg.ID {
		return
	}
	m.qmu.Lock()
	inc, up := m.cur[peer]
	if r, ok := m.quar[peer]; up && (!ok || r.inc != inc) {
		m.quar[peer] = quarRequest{inc, cause}
	}
	m.qmu.Unlock()
	if !up {
		return
	}
	select {
	case m.qwake <- struct{}{}:
	default:
	}
}

// Stats returns the Mutex's counters. It works after Close too.
func (m *Mutex) Stats() Stats { return m.stats.snapshot() }

// Close withdraws any outstanding request so that no peer waits on this
// one, fails every waiting Lock with ErrClosed and stops the Mutex's
// goroutine. It does not close the Transport. A second Close returns
// ErrClosed.
//
// Close does not release a lock that a caller holds (Unlock was not
// called): a release without the holder's payload would let the next
// holder go ahead without the holder's update. The peers then treat this
// peer as crashed: its request stays first in their queues until its next
// incarnation comes up (PeerUp), which the application hears of through
// Config.OnPeerUp. Unlock before Close. (A grant that no Lock call has
// returned yet, say because its ctx ended just then, is released.)
func (m *Mutex) Close() error {
	err := ErrClosed
	m.once.Do(func() {
		close(m.closing)
		err = nil
	})
	<-m.done
	return err
}

// do runs f on the driver goroutine and waits for it to finish.
func (m *Mutex) do(ctx context.Context, f func(*driver)) error {
	ran := make(chan struct{})
	g := func(d *driver) { f(d); close(ran) }
	select {
	case m.cmds <- g:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return m.stopped()
	}
	<-ran
	return nil
}

// stopped is the error for calls after the driver stopped: ErrClosed, with
// the cause if the Mutex stopped by itself.
func (m *Mutex) stopped() error {
	if m.failure != nil {
		return fmt.Errorf("%w: %w", ErrClosed, m.failure)
	}
	return ErrClosed
}

// driver is the state owned by the Mutex's goroutine.
type driver struct {
	m       *Mutex
	machine *Machine
	waiters []*waiter // local callers, in arrival order
	holder  *waiter   // the call that holds the lock, if any

	outboxes map[string]*outbox // per peer: messages the Transport has not taken yet
	banned   map[string]uint64  // per quarantined peer: its incarnation that is current here
	pumps    sync.WaitGroup
	stopPump chan struct{}   // closed: pumps exit once their outbox is empty
	sendCtx  context.Context // cancelled: pumps give up at once
	traced   uint64          // the clock as last reported to Config.Trace
}

func (d *driver) run() {
	m := d.m
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.sendCtx, d.stopPump = ctx, make(chan struct{})
	for _, ob := range d.outboxes {
		d.pumps.Add(1)
		go func() {
			defer d.pumps.Done()
			ob.pump(d.sendCtx, d.stopPump, d.transmit, d.refused)
		}()
	}
	defer d.stopPumps(cancel)
	recv := m.cfg.Transport.Receive()
	for {
		select {
		case f := <-m.cmds:
			d.applyQuarantines() // a Quarantine call before this one's
			f(d)
		case msg, ok := <-recv:
			if !ok {
				m.failure = errors.New("the transport closed its receive channel")
				m.log.Error("transport closed; mutex stops")
				d.shutdown(false)
				return
			}
			d.receive(msg)
		case <-m.qwake:
		case err := <-m.failed:
			// A message is lost: the peers' queues can no longer be trusted.
			m.failure = fmt.Errorf("%w: %w", ErrTransport, err)
			m.log.Error("transport refused a message; mutex stops", "err", err)
			d.shutdown(false)
			return
		case <-m.closing:
			d.shutdown(true)
			return
		}
		d.applyQuarantines()
		d.grant()
		d.traceLocal()
	}
}

// transmit hands one message to the Transport; it runs on a pump.
func (d *driver) transmit(ctx context.Context, msg Message) error {
	return d.m.cfg.Transport.Send(ctx, msg)
}

// refused reports a message the Transport would not take; it runs on a
// pump, which then stops.
func (d *driver) refused(msg Message, err error) {
	d.m.stats.update(func(s *Stats) { s.SendErrors++ })
	select {
	case d.m.failed <- fmt.Errorf("send %v: %w", msg, err):
	default:
	}
}

// stopPumps lets the pumps hand over what is queued, for at most
// closeSendTimeout, then stops them.
func (d *driver) stopPumps(cancel context.CancelFunc) {
	close(d.stopPump)
	for _, ob := range d.outboxes {
		ob.poke()
	}
	done := make(chan struct{})
	go func() { d.pumps.Wait(); close(done) }()
	t := time.NewTimer(closeSendTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
}

// receive handles one inbound message: the release payload first, then the
// state machine. A protocol violation, or an error from the application's
// handler, quarantines the sender's incarnation; a refused RELEASE does not
// take effect.
func (d *driver) receive(msg Message) {
	m := d.m
	if !m.members[msg.From] || msg.From == m.cfg.ID {
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped a message from a non-member", "msg", msg.String())
		return
	}
	if inc, ok := d.banned[msg.From]; ok {
		if msg.Kind != PeerUp || msg.Incarnation == inc {
			m.stats.update(func(s *Stats) { s.Dropped++ })
			m.log.Debug("ignored a message from a quarantined incarnation", "msg", msg.String())
			return
		}
		// Another incarnation: a restart. Whether it is older than the
		// quarantined one is the Transport's to judge (see
		// Transport.Quarantine).
		delete(d.banned, msg.From)
	}
	switch err := d.machine.Accepts(msg); {
	case errors.Is(err, ErrStale): // expected after a restart
		m.stats.update(func(s *Stats) { s.Stale++ })
		m.log.Debug("ignored a message meant for an earlier incarnation, or sent before the sender's hello", "msg", msg.String())
		return
	case errors.Is(err, ErrViolation):
		d.quarantine(msg.From, err)
		return
	case err != nil: // unreachable after the checks above
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped message", "msg", msg.String(), "err", err)
		return
	}
	if msg.Kind == Data {
		d.received(msg, d.machine.Clock())
		if m.cfg.OnMessage != nil {
			if err := m.cfg.OnMessage(msg.From, msg.Payload); err != nil {
				m.stats.update(func(s *Stats) { s.HandlerErrors++ })
				d.quarantine(msg.From, fmt.Errorf("message handler refused %v: %w", msg, err))
			}
		}
		return
	}
	if msg.Kind == Release && msg.Payload != nil && m.cfg.OnRelease != nil {
		if err := m.cfg.OnRelease(msg.From, msg.Payload); err != nil {
			m.stats.update(func(s *Stats) { s.HandlerErrors++ })
			d.quarantine(msg.From, fmt.Errorf("release handler refused %v: %w", msg, err))
			return
		}
	}
	before := d.machine.Clock()
	out, err := d.machine.Step(msg)
	if err != nil { // unreachable after Accepts
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped message", "msg", msg.String(), "err", err)
		return
	}
	d.received(msg, before)
	d.send(out)
	if msg.Kind == PeerUp {
		m.qmu.Lock()
		m.cur[msg.From] = msg.Incarnation
		m.qmu.Unlock()
		if m.cfg.OnPeerUp != nil {
			m.cfg.OnPeerUp(msg.From)
		}
	}
}

// quarantine refuses the current incarnation of peer: the Transport ends
// its session, and the driver ignores it until another incarnation comes
// up. Before peer's first PeerUp there is no incarnation to name; the
// input is dropped.
func (d *driver) quarantine(peer string, cause error) {
	m := d.m
	if _, ok := d.banned[peer]; ok {
		return
	}
	inc, up := d.machine.PeerIncarnation(peer)
	if !up {
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped bad input from a peer not yet up", "from", peer, "err", cause)
		return
	}
	d.banned[peer] = inc
	m.stats.update(func(s *Stats) { s.Quarantined++ })
	m.log.Warn("refused bad input; peer quarantined", "from", peer, "incarnation", inc, "err", cause)
	m.cfg.Transport.Quarantine(peer, inc, cause)
}

// applyQuarantines carries out Mutex.Quarantine's requests whose
// incarnation is still current.
func (d *driver) applyQuarantines() {
	m := d.m
	m.qmu.Lock()
	if len(m.quar) == 0 {
		m.qmu.Unlock()
		return
	}
	q := m.quar
	m.quar = map[string]quarRequest{}
	m.qmu.Unlock()
	for _, id := range d.machine.Members() { // in a fixed order
		r, ok := q[id]
		inc, up := d.machine.PeerIncarnation(id)
		switch {
		case !ok:
		case !up || r.inc != inc:
			m.log.Debug("dropped a quarantine request for an incarnation that is gone", "peer", id, "incarnation", r.inc, "err", r.cause)
		default:
			d.quarantine(id, fmt.Errorf("reported by the application: %w", r.cause))
		}
	}
}

// received counts and traces a message the driver acted on; before is the
// clock before the Machine handled it.
func (d *driver) received(msg Message, before uint64) {
	d.m.stats.update(func(s *Stats) { s.Received[msg.Kind]++ })
	d.trace(Event{Message: msg, Before: before, Clock: receiveClock(before, msg)})
}

// send queues msgs for their peers' pumps, in order; it never waits.
func (d *driver) send(msgs []Message) {
	for _, msg := range msgs {
		d.outboxes[msg.To].push(msg)
		d.sent(msg)
	}
}

// withdraw queues the RELEASEs that withdraw a request that was never
// granted. Where the REQUEST has not left yet, the two cancel out: a peer
// that never heard of a request need not hear of its end. (Only a
// withdrawal may: a granted request's REQUEST and RELEASE carry clocks that
// later requests must be stamped after.)
func (d *driver) withdraw(msgs []Message) {
	for _, msg := range msgs {
		if d.outboxes[msg.To].cancel(msg) {
			d.m.stats.update(func(s *Stats) { s.Sent[Request]-- }) // it never left
			continue
		}
		d.sent(msg)
	}
}

// sent counts and traces a message queued for its peer. The Machine stamps
// what one step sends in the order it ticks, so the clock right after a
// send is the highest stamp so far (a resent REQUEST keeps its old one).
func (d *driver) sent(msg Message) {
	d.m.stats.update(func(s *Stats) { s.Sent[msg.Kind]++ })
	d.trace(Event{Sent: true, Message: msg, Before: d.traced, Clock: max(d.traced, msg.Clock)})
}

// traceLocal reports a change of the clock that no message carried (see
// Event); the driver calls it after every step.
func (d *driver) traceLocal() {
	if c := d.machine.Clock(); c != d.traced {
		d.trace(Event{Before: d.traced, Clock: c})
	}
}

// trace hands ev to Config.Trace and remembers its clock.
func (d *driver) trace(ev Event) {
	d.traced = ev.Clock
	if t := d.m.cfg.Trace; t != nil {
		t(ev)
	}
}

// enqueue adds a Lock or TryLock call.
func (d *driver) enqueue(w *waiter) {
	if w.try && (d.holder != nil || len(d.waiters) > 0) {
		w.result <- lockResult{err: ErrLocked}
		return
	}
	d.waiters = append(d.waiters, w)
	d.request()
}

// request makes sure a distributed request is outstanding while callers wait.
func (d *driver) request() {
	if len(d.waiters) == 0 || d.holder != nil || d.machine.Requesting() {
		return
	}
	out, err := d.machine.Request()
	if err != nil {
		d.m.log.Error("request", "err", err) // unreachable: guarded above
		return
	}
	d.send(out)
}

// cancel withdraws w: from the local queue, or, if it was granted meanwhile,
// by releasing the lock.
func (d *driver) cancel(w *waiter) {
	if d.holder == w {
		if err := d.unlock(nil); err != nil {
			d.m.log.Error("release after cancel", "err", err)
		}
		return
	}
	if i := slices.Index(d.waiters, w); i >= 0 {
		d.waiters = slices.Delete(d.waiters, i, i+1)
		d.withdrawIfIdle()
	}
}

// withdrawIfIdle withdraws our request when no local caller wants it.
func (d *driver) withdrawIfIdle() {
	if len(d.waiters) > 0 || d.holder != nil || !d.machine.Requesting() || d.machine.Held() {
		return
	}
	out, err := d.machine.Release(nil)
	if err != nil {
		d.m.log.Error("withdraw", "err", err)
		return
	}
	d.withdraw(out)
}

// unlock releases the lock held by the process.
func (d *driver) unlock(payload []byte) error {
	if d.holder == nil {
		return ErrNotHeld
	}
	out, err := d.machine.Release(payload)
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	d.holder = nil
	d.send(out)
	d.request() // the next local caller, if any, requests afresh
	return nil
}

// grant hands the lock to the first local waiter once the machine holds it,
// and settles TryLock calls that cannot win.
func (d *driver) grant() {
	if len(d.waiters) == 0 || d.holder != nil {
		return
	}
	w := d.waiters[0]
	switch {
	case d.machine.Held():
		d.waiters = d.waiters[1:]
		d.holder = w
		tok, _ := d.machine.Own()
		wait := time.Since(w.start)
		d.m.stats.update(func(s *Stats) {
			s.Entries++
			s.WaitTotal += wait
			s.WaitMax = max(s.WaitMax, wait)
		})
		w.result <- lockResult{tok: tok}
	case w.try && d.machine.Behind():
		d.waiters = d.waiters[1:]
		w.result <- lockResult{err: ErrLocked}
		d.withdrawIfIdle()
	}
}

func (d *driver) state() State {
	s := State{
		Clock:   d.machine.Clock(),
		Queue:   d.machine.Queue(),
		Held:    d.machine.Held(),
		Waiting: len(d.waiters),
		Missing: d.machine.Missing(),
	}
	return s
}

// shutdown tells the peers we no longer want the lock (the pumps hand that
// over as the driver exits), unless a caller holds it, then fails every
// waiter.
func (d *driver) shutdown(tell bool) {
	if d.holder != nil {
		select {
		case <-d.holder.result:
			// The grant never reached its caller (its ctx ended, or it had
			// not run yet): nobody holds the lock, so it is released below.
			d.holder = nil
		default:
		}
	}
	if tell && d.holder != nil {
		d.m.log.Warn("closed while the lock is held: not released; peers wait for this peer's next incarnation")
		tell = false
	}
	if tell {
		withdrawal := d.machine.Requesting() && !d.machine.Held() && d.m.cfg.Algorithm == Lamport
		if out := d.machine.Leave(); withdrawal {
			d.withdraw(out)
		} else {
			d.send(out)
		}
	}
	d.traceLocal()
	err := d.m.stopped()
	for _, w := range d.waiters {
		w.result <- lockResult{err: err}
	}
	d.waiters = nil
	d.holder = nil
}

// closeSendTimeout bounds how long Close waits for a Transport that does
// not take the last messages (a peer's queue is full).
const closeSendTimeout = 5 * time.Second
