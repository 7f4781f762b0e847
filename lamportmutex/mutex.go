package lamportmutex

import (
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
// it reads the Transport, sends what the Machine says, and wakes waiters.
type Mutex struct {
	cfg     Config
	log     *slog.Logger
	members map[string]bool
	cmds    chan func(*driver)
	closing chan struct{}
	done    chan struct{}
	once    sync.Once
	stats   statsBox
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
	machine, err := NewMachine(cfg.ID, ids, cfg.Transport.Incarnation())
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
	}
	for _, id := range ids {
		m.members[id] = true
	}
	m.stats.s.Sent = map[Kind]uint64{}
	m.stats.s.Received = map[Kind]uint64{}
	d := &driver{m: m, machine: machine}
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
		return Token{}, ErrClosed
	}
}

// Unlock releases the lock, sending payload (which may be nil) with the
// RELEASE to every peer; each hands it to its Config.OnRelease before the
// release takes effect there. Unlock returns once the release is handed to
// the Transport. It returns ErrNotHeld if the lock is not held and
// ErrClosed after Close.
func (m *Mutex) Unlock(payload []byte) error {
	errc := make(chan error, 1)
	if err := m.do(context.Background(), func(d *driver) { errc <- d.unlock(payload) }); err != nil {
		return err
	}
	return <-errc
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

// Stats returns the Mutex's counters. It works after Close too.
func (m *Mutex) Stats() Stats { return m.stats.snapshot() }

// Close withdraws any outstanding request (or releases the lock, without a
// payload) so that no peer waits on this one, fails every waiting Lock with
// ErrClosed and stops the Mutex's goroutine. It does not close the
// Transport. A second Close returns ErrClosed.
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
		return ErrClosed
	}
	<-ran
	return nil
}

// driver is the state owned by the Mutex's goroutine.
type driver struct {
	m       *Mutex
	machine *Machine
	waiters []*waiter // local callers, in arrival order
	holder  *waiter   // the call that holds the lock, if any
	ctx     context.Context
}

func (d *driver) run() {
	defer close(d.m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = ctx
	recv := d.m.cfg.Transport.Receive()
	for {
		select {
		case f := <-d.m.cmds:
			f(d)
		case msg, ok := <-recv:
			if !ok {
				d.m.log.Error("transport closed; mutex stops")
				d.shutdown(false)
				return
			}
			d.receive(msg)
		case <-d.m.closing:
			d.shutdown(true)
			return
		}
		d.grant()
	}
}

// receive handles one inbound message: the release payload first, then the
// state machine.
func (d *driver) receive(msg Message) {
	m := d.m
	if !m.members[msg.From] || msg.From == m.cfg.ID || msg.To != m.cfg.ID || !msg.Kind.Valid() {
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped message", "msg", msg.String())
		return
	}
	if msg.Kind == Release && msg.Payload != nil && m.cfg.OnRelease != nil {
		if err := m.cfg.OnRelease(msg.From, msg.Payload); err != nil {
			m.stats.update(func(s *Stats) { s.HandlerErrors++ })
			m.log.Error("release handler failed", "from", msg.From, "err", err)
		}
	}
	out, err := d.machine.Step(msg)
	if errors.Is(err, ErrStale) { // expected after a restart
		m.stats.update(func(s *Stats) { s.Stale++ })
		m.log.Debug("ignored message sent before the sender's hello", "msg", msg.String())
		return
	}
	if err != nil { // unreachable after the checks above; kept for safety
		m.stats.update(func(s *Stats) { s.Dropped++ })
		m.log.Warn("dropped message", "msg", msg.String(), "err", err)
		return
	}
	m.stats.update(func(s *Stats) { s.Received[msg.Kind]++ })
	if m.cfg.Trace != nil {
		m.cfg.Trace(Event{Message: msg, Clock: d.machine.Clock()})
	}
	d.send(out)
}

// send hands msgs to the Transport in order.
func (d *driver) send(msgs []Message) {
	m := d.m
	for _, msg := range msgs {
		if err := m.cfg.Transport.Send(d.ctx, msg); err != nil {
			m.stats.update(func(s *Stats) { s.SendErrors++ })
			m.log.Error("send failed", "msg", msg.String(), "err", err)
			continue
		}
		m.stats.update(func(s *Stats) { s.Sent[msg.Kind]++ })
		if m.cfg.Trace != nil {
			m.cfg.Trace(Event{Sent: true, Message: msg, Clock: d.machine.Clock()})
		}
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
	d.send(out)
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
	}
	if own, ok := d.machine.Own(); ok && !s.Held {
		for i, id := range d.machine.ids {
			if i != d.machine.self && d.machine.latest[i] <= own.Clock {
				s.Missing = append(s.Missing, id)
			}
		}
	} else if d.machine.pending {
		for i, id := range d.machine.ids {
			if !d.machine.heard[i] {
				s.Missing = append(s.Missing, id)
			}
		}
	}
	return s
}

// shutdown tells the peers we no longer want or hold the lock, then fails
// every waiter.
func (d *driver) shutdown(tell bool) {
	if tell && d.machine.Requesting() {
		if out, err := d.machine.Release(nil); err == nil {
			// d.ctx is still live; bound the wait on a full transport.
			ctx, cancel := context.WithTimeout(d.ctx, closeSendTimeout)
			d.ctx = ctx
			d.send(out)
			cancel()
		}
	}
	for _, w := range d.waiters {
		w.result <- lockResult{err: ErrClosed}
	}
	d.waiters = nil
	d.holder = nil
}

// closeSendTimeout bounds how long Close waits for a full Transport to take
// the final RELEASE.
const closeSendTimeout = 5 * time.Second
