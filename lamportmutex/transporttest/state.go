package transporttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// chance is how long the suite gives a transport to do something the
// contract forbids before it concludes that the transport does not. It is
// never a bound on anything the transport must do.
const chance = 250 * time.Millisecond

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
