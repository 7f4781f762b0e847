package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// chance is how long the suite gives a transport to do something the
// contract forbids before it concludes that the transport does not. It is
// never a bound on anything the transport must do.
const chance = 100 * time.Millisecond

// cleanupFlush is how long the Close at the end of a subtest may flush.
const cleanupFlush = time.Second

// suite is the state of one subtest: its network, the transports it
// started (nodes) and the violations their deliver calls saw.
type suite struct {
	t       *testing.T
	net     Network
	ids     []string
	timeout time.Duration

	mu         sync.Mutex
	nodes      map[string]*node   // the current incarnation of each id
	all        []*node            // every node made, in order
	streams    map[uint64]*stream // by id
	violations []string
	reported   bool
	changed    chan struct{} // closed and replaced on every delivery
	gates      []*gate
}

func newSuite(t *testing.T, f Factory) *suite {
	t.Helper()
	ids := []string{"p1", "p2", "p3"}
	net := f(t, append([]string(nil), ids...))
	if len(net.Transports) != len(ids) {
		t.Fatalf("factory made %d transports for %d ids", len(net.Transports), len(ids))
	}
	if (net.Cut == nil) != (net.Heal == nil) {
		t.Fatalf("factory set only one of Cut and Heal")
	}
	s := &suite{
		t: t, net: net, ids: ids, timeout: net.Timeout,
		nodes:   make(map[string]*node),
		streams: make(map[uint64]*stream),
		changed: make(chan struct{}),
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	for i, tr := range net.Transports {
		if tr == nil {
			t.Fatalf("factory made a nil transport for %q", ids[i])
		}
		if tr.ID() != ids[i] {
			t.Fatalf("transport %d has ID %q, want %q", i, tr.ID(), ids[i])
		}
		s.nodes[ids[i]] = s.newNode(tr)
	}
	t.Cleanup(s.cleanup)
	return s
}

// cleanup opens every gate, closes every node the suite started and has
// not crashed, and reports what deliver calls saw.
func (s *suite) cleanup() {
	s.mu.Lock()
	gates := s.gates
	all := s.all
	s.mu.Unlock()
	for _, g := range gates {
		g.open()
	}
	for _, n := range all {
		if n.crashed.Load() {
			continue
		}
		// Some subtests leave messages that can never be acknowledged
		// (to a peer that closed or quarantined the sender): Close may
		// end its flush with ctx's error, but must return.
		if err := n.closeWithin(cleanupFlush, s.timeout); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.t.Errorf("%s: Close: %v", n.id, err)
		}
	}
	s.report()
	s.mu.Lock()
	s.reported = true
	s.mu.Unlock()
}

// violate records a violation seen on a goroutine of the transport's.
func (s *suite) violate(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.reported {
		s.violations = append(s.violations, fmt.Sprintf(format, args...))
	}
}

// violated reports whether a violation waits to be reported.
func (s *suite) violated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.violations) > 0
}

// report fails the test with the violations recorded so far.
func (s *suite) report() {
	s.t.Helper()
	s.checkUps()
	s.mu.Lock()
	v := s.violations
	s.violations = nil
	s.mu.Unlock()
	const most = 10
	for i, msg := range v {
		if i == most {
			s.t.Errorf("... and %d more violations", len(v)-most)
			break
		}
		s.t.Errorf("%s", msg)
	}
}

// node returns the current incarnation of id.
func (s *suite) node(id string) *node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[id]
}

// wake tells waiters that something was delivered.
func (s *suite) wake() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// waitFor waits until cond holds, and fails the test if it does not within
// the timeout: the transport hung.
func (s *suite) waitFor(what string, cond func() bool) {
	s.t.Helper()
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		if s.violated() {
			s.report()
			s.t.Fatalf("stopped waiting for %s after the violations above", what)
		}
		select {
		case <-ch:
		case <-timer.C:
			s.report()
			s.t.Fatalf("waited %v for %s", s.timeout, what)
		}
	}
}

// await waits for ch to yield a value within the timeout, or fails the
// test saying what hung.
func await[V any](s *suite, what string, ch <-chan V) V {
	s.t.Helper()
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		s.report()
		s.t.Fatalf("waited %v for %s", s.timeout, what)
		panic("unreachable")
	}
}

// async runs f on a goroutine and returns the channel its result arrives on.
func async[V any](f func() V) <-chan V {
	ch := make(chan V, 1)
	go func() { ch <- f() }()
	return ch
}

// ctx returns a context that ends after the suite's timeout.
func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	s.t.Cleanup(cancel)
	return ctx
}

// A gate blocks the deliver calls that wait on it until it is opened.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func (s *suite) newGate() *gate {
	g := &gate{ch: make(chan struct{})}
	s.mu.Lock()
	s.gates = append(s.gates, g)
	s.mu.Unlock()
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

// node is one incarnation of a peer: its transport and what its deliver
// calls received.
type node struct {
	s   *suite
	id  string
	tr  lamportmutex.Transport
	inc uint64

	hook          atomic.Pointer[func(lamportmutex.Message)]
	started       atomic.Bool
	closeReturned atomic.Bool
	crashed       atomic.Bool

	peers map[string]*peerLog // by sender id; fixed at creation
}

// peerLog is what one node received from one peer.
type peerLog struct {
	inflight atomic.Int32

	mu         sync.Mutex
	ups        []uint64 // PeerUp incarnations, in order
	upsChecked int      // how many of ups checkUps has checked
	downs      int
	msgs       []lamportmutex.Message // every other message, in order
	last       map[uint64]uint64      // last seq delivered, by stream id
	quarantine uint64                 // the incarnation quarantined, 0 if none
	afterQuar  int                    // messages of it delivered after
}

func (s *suite) newNode(tr lamportmutex.Transport) *node {
	n := &node{s: s, id: tr.ID(), tr: tr, inc: tr.Incarnation(), peers: make(map[string]*peerLog)}
	for _, id := range s.ids {
		if id != n.id {
			n.peers[id] = &peerLog{last: make(map[uint64]uint64)}
		}
	}
	s.mu.Lock()
	s.all = append(s.all, n)
	s.mu.Unlock()
	return n
}

// start starts n's transport with the recording deliver.
func (n *node) start() {
	n.s.t.Helper()
	if err := n.tr.Start(n.deliver); err != nil {
		n.s.t.Fatalf("%s: Start: %v", n.id, err)
	}
	n.started.Store(true)
}

// onDeliver sets the function every deliver call of n runs after
// recording its message (nil: none).
func (n *node) onDeliver(f func(lamportmutex.Message)) {
	if f == nil {
		n.hook.Store(nil)
		return
	}
	n.hook.Store(&f)
}

// closeWithin closes n's transport with a ctx that ends after flush, and
// fails if Close has not returned patience after that.
func (n *node) closeWithin(flush, patience time.Duration) error {
	if n.closeReturned.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), flush)
	defer cancel()
	done := async(func() error { return n.tr.Close(ctx) })
	timer := time.NewTimer(flush + patience)
	defer timer.Stop()
	select {
	case err := <-done:
		n.closeReturned.Store(true)
		return err
	case <-timer.C:
		return fmt.Errorf("hung for %v after its ctx ended", patience)
	}
}

// deliver is the function the suite starts every transport with. It
// checks what a single call can show, records the message and runs the
// subtest's hook.
func (n *node) deliver(m lamportmutex.Message) {
	s := n.s
	pl := n.peers[m.From]
	if pl == nil {
		s.violate("%s: deliver(%s): From %q is no other member", n.id, describe(m), m.From)
		return
	}
	if c := pl.inflight.Add(1); c > 1 {
		s.violate("%s: deliver(%s): %d deliver calls for peer %s run at once", n.id, describe(m), c, m.From)
	}
	defer pl.inflight.Add(-1)
	if n.closeReturned.Load() {
		s.violate("%s: deliver(%s) called after Close returned", n.id, describe(m))
	}
	defer func() {
		if n.closeReturned.Load() {
			s.violate("%s: deliver(%s) still running when Close returned", n.id, describe(m))
		}
	}()
	if m.To != n.id {
		s.violate("%s: deliver(%s): To is %q", n.id, describe(m), m.To)
	}
	n.record(pl, m)
	s.wake()
	if h := n.hook.Load(); h != nil {
		(*h)(m)
	}
}

// record checks m against what pl received before and appends it.
func (n *node) record(pl *peerLog, m lamportmutex.Message) {
	s := n.s
	pl.mu.Lock()
	defer pl.mu.Unlock()
	up := uint64(0)
	if len(pl.ups) > 0 {
		up = pl.ups[len(pl.ups)-1]
	}
	switch m.Kind {
	case lamportmutex.PeerUp:
		switch {
		case m.Incarnation == 0:
			s.violate("%s: PeerUp from %s with incarnation 0", n.id, m.From)
		case m.Incarnation == up:
			s.violate("%s: a second PeerUp from %s for incarnation %d", n.id, m.From, up)
		case m.Incarnation < up:
			s.violate("%s: PeerUp from %s for incarnation %d after %d", n.id, m.From, m.Incarnation, up)
		}
		pl.ups = append(pl.ups, m.Incarnation)
		return
	case lamportmutex.PeerDown:
		if up == 0 {
			s.violate("%s: PeerDown from %s before any PeerUp of it", n.id, m.From)
		}
		pl.downs++
		return
	}
	st := s.streamOf(m.Clock)
	if st == nil {
		s.violate("%s: delivered %s, which no Send accepted", n.id, describe(m))
		return
	}
	if st.from.id != m.From || st.to != n.id {
		s.violate("%s: delivered %s, which %s sent to %s", n.id, describe(m), st.from.id, st.to)
		return
	}
	if !st.wellFormed(m) {
		s.violate("%s: delivered %s altered (kind, payload or Incarnation not as sent)", n.id, describe(m))
	}
	switch {
	case up == 0:
		s.violate("%s: %s delivered before any PeerUp of %s", n.id, describe(m), m.From)
	case st.from.inc < up:
		s.violate("%s: %s of incarnation %d delivered after PeerUp of incarnation %d", n.id, describe(m), st.from.inc, up)
	case st.from.inc > up:
		s.violate("%s: %s of incarnation %d delivered before its PeerUp (last PeerUp: %d)", n.id, describe(m), st.from.inc, up)
	}
	if pl.quarantine != 0 && pl.quarantine == st.from.inc {
		pl.afterQuar++
	}
	seq, last := seqOf(m.Clock), pl.last[st.id]
	switch {
	case seq <= last:
		s.violate("%s: message %d of stream %d from %s delivered after message %d (duplicate or reordered)", n.id, seq, st.id, m.From, last)
	case seq != last+1 && !st.lossy:
		s.violate("%s: message %d of stream %d from %s delivered after message %d: the messages between were lost or reordered", n.id, seq, st.id, m.From, last)
	}
	if seq > last {
		pl.last[st.id] = seq
	}
	pl.msgs = append(pl.msgs, m)
}

// describe formats m for a violation, naming its stream and place in it.
func describe(m lamportmutex.Message) string {
	switch m.Kind {
	case lamportmutex.PeerUp, lamportmutex.PeerDown:
		return m.String()
	}
	return fmt.Sprintf("%s->%s %v (stream %d, message %d)", m.From, m.To, m.Kind, m.Clock>>32, seqOf(m.Clock))
}

// checkUps checks that every PeerUp received since the last check names
// an incarnation the Factory or Restart made. It runs on the test's
// goroutine, so a PeerUp that came before Restart returned is checked
// after.
func (s *suite) checkUps() {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	for _, n := range all {
		for id, pl := range n.peers {
			pl.mu.Lock()
			ups := pl.ups[pl.upsChecked:]
			pl.upsChecked = len(pl.ups)
			pl.mu.Unlock()
			for _, inc := range ups {
				if !s.knownIncarnation(id, inc) {
					s.violate("%s: PeerUp from %s names incarnation %d, which no transport of it has", n.id, id, inc)
				}
			}
		}
	}
}

// knownIncarnation reports whether some transport of id has inc.
func (s *suite) knownIncarnation(id string, inc uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.all {
		if n.id == id && n.inc == inc {
			return true
		}
	}
	return false
}

// got returns how many messages of stream st n has received.
func (n *node) got(st *stream) int {
	pl := n.peers[st.from.id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	c := 0
	for _, m := range pl.msgs {
		if m.Clock>>32 == st.id {
			c++
		}
	}
	return c
}

// hasAll reports whether n has received every message st had accepted.
func (n *node) hasAll(st *stream) bool { return n.got(st) >= st.accepted() }

// ups returns the PeerUp incarnations n has received from id.
func (n *node) ups(id string) []uint64 {
	pl := n.peers[id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]uint64(nil), pl.ups...)
}

// downs returns how many PeerDowns n has received from id.
func (n *node) downs(id string) int {
	pl := n.peers[id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.downs
}

// isUp reports whether n has received PeerUp of incarnation inc of id.
func (n *node) isUp(id string, inc uint64) bool {
	for _, u := range n.ups(id) {
		if u == inc {
			return true
		}
	}
	return false
}

// waitUp waits until every node in ns has received PeerUp from every other
// current node.
func (s *suite) waitUp(ns ...*node) {
	s.t.Helper()
	for _, n := range ns {
		for _, m := range ns {
			if n == m {
				continue
			}
			s.waitFor(fmt.Sprintf("PeerUp of %s (incarnation %d) at %s", m.id, m.inc, n.id),
				func() bool { return n.isUp(m.id, m.inc) })
		}
	}
}

// A stream is a numbered sequence of messages from one node to one peer,
// sent by one goroutine at a time. Message i carries Clock id<<32 | i, so
// the receiver can tell the stream and the place in it.
type stream struct {
	id    uint64
	from  *node
	to    string
	toInc uint64 // the Incarnation field its messages carry
	lossy bool   // its sender or receiver may end: messages may be lost

	mu   sync.Mutex
	next uint64 // the seq of the next message; accepted() is next-1
}

// newStream starts a stream from n to the current incarnation of peer to.
func (s *suite) newStream(from *node, to string, lossy bool) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stream{id: uint64(len(s.streams) + 1), from: from, to: to, toInc: s.nodes[to].inc, lossy: lossy, next: 1}
	s.streams[st.id] = st
	return st
}

func (s *suite) streamOf(clock uint64) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[clock>>32]
}

func seqOf(clock uint64) uint64 { return clock & (1<<32 - 1) }

// kinds cycles through the kinds a peer sends.
var kinds = []lamportmutex.Kind{lamportmutex.Request, lamportmutex.Reply, lamportmutex.Release, lamportmutex.Data}

// message builds message seq of st: a payload (for Release and Data) of
// size bytes, at least 8, starting with the Clock.
func (st *stream) message(seq uint64, kind lamportmutex.Kind, size int) lamportmutex.Message {
	m := lamportmutex.Message{Kind: kind, From: st.from.id, To: st.to, Clock: st.id<<32 | seq, Incarnation: st.toInc}
	if kind == lamportmutex.Release || kind == lamportmutex.Data {
		m.Payload = make([]byte, max(size, 8))
		binary.BigEndian.PutUint64(m.Payload, m.Clock)
		for i := 8; i < len(m.Payload); i++ {
			m.Payload[i] = byte(seq) ^ byte(i)
		}
	}
	return m
}

// wellFormed reports whether m is as message() builds it.
func (st *stream) wellFormed(m lamportmutex.Message) bool {
	if m.Incarnation != st.toInc {
		return false
	}
	if m.Kind != lamportmutex.Release && m.Kind != lamportmutex.Data {
		return m.Kind.Valid() && len(m.Payload) == 0
	}
	want := st.message(seqOf(m.Clock), m.Kind, len(m.Payload))
	return bytes.Equal(m.Payload, want.Payload)
}

// send sends the stream's next message; it counts only if Send accepts it.
func (st *stream) send(kind lamportmutex.Kind, size int) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.from.tr.Send(st.message(st.next, kind, size))
	if err == nil {
		st.next++
	}
	return err
}

// sendN sends count messages of the cycling kinds, waiting with Flush and
// sending again when Send refuses one for a full queue. It returns the
// first other error.
func (st *stream) sendN(ctx context.Context, count int) error {
	for i := 0; i < count; i++ {
		kind := kinds[i%len(kinds)]
		for {
			err := st.send(kind, 16)
			if err == nil {
				break
			}
			if !errors.Is(err, lamportmutex.ErrQueueFull) {
				return fmt.Errorf("%s: Send to %s: %w", st.from.id, st.to, err)
			}
			if err := st.from.tr.Flush(ctx); err != nil {
				return fmt.Errorf("%s: Flush after a full queue: %w", st.from.id, err)
			}
		}
	}
	return nil
}

func (st *stream) accepted() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return int(st.next - 1)
}
