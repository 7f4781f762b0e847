package lamportmutex

// Adversarial review tests. The TestReview* tests that fail demonstrate
// bugs found in the review (see the report); the passing ones widen the
// search of the simulation and the explorer. Long searches run only with
// LAMPORT_REVIEW_SOAK set.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// reviewBound bounds waits for something that, without the bug, happens at
// once. It is only used to turn a hang into a failure.
const reviewBound = 30 * time.Second

// fakeTransport is a Transport driven by the test. Its inbound channel is
// unbuffered, so when a test's feed returns the driver has taken the
// message, and the next Mutex call runs after the driver handled it.
type fakeTransport struct {
	id   string
	inc  uint64
	in   chan Message
	send func(ctx context.Context, msg Message) error // nil: accept

	mu   sync.Mutex
	sent []Message
}

func newFakeTransport(id string, inc uint64) *fakeTransport {
	return &fakeTransport{id: id, inc: inc, in: make(chan Message)}
}

func (f *fakeTransport) ID() string              { return f.id }
func (f *fakeTransport) Incarnation() uint64     { return f.inc }
func (f *fakeTransport) Receive() <-chan Message { return f.in }
func (f *fakeTransport) Close() error            { return nil }

func (f *fakeTransport) Send(ctx context.Context, msg Message) error {
	if f.send != nil {
		if err := f.send(ctx, msg); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.sent = append(f.sent, msg)
	f.mu.Unlock()
	return nil
}

func (f *fakeTransport) sentTo(to string, k Kind) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Message
	for _, m := range f.sent {
		if m.To == to && m.Kind == k {
			out = append(out, m)
		}
	}
	return out
}

// syncWith plays first contact for every peer: PeerUp(p) with incarnation
// peerInc, then p's HELLO addressed to our incarnation.
func (f *fakeTransport) syncWith(t *testing.T, mu *Mutex, peers []string, peerInc uint64) {
	t.Helper()
	for _, p := range peers {
		f.in <- Message{Kind: PeerUp, From: p, To: f.id, Incarnation: peerInc}
		f.in <- Message{Kind: Hello, From: p, To: f.id, Clock: 1, Incarnation: f.inc}
	}
	if _, err := mu.State(context.Background()); err != nil { // barrier
		t.Fatal(err)
	}
}

// TestReviewStaleReleasePayloadHandled: the driver hands a RELEASE's
// payload to OnRelease before the Machine has judged the message; a RELEASE
// addressed to an earlier incarnation of this peer (the Transport contract
// allows delivering it to the new one, and transport.TCP does: on a new
// remote incarnation it renumbers and resends every unacknowledged frame)
// is reported ErrStale by Step and counted in Stats.Stale, yet its payload
// has been handled. When the dead incarnation had already handled and
// persisted that payload (crash after handling, before the transport's
// ack), the new incarnation handles it a second time: ledger.HandleRelease
// then fails the node with ErrBadHeight and it stops taking transfers.
func TestReviewStaleReleasePayloadHandled(t *testing.T) {
	ft := newFakeTransport("1", 7) // this process is incarnation 7
	var handled []string
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft,
		OnRelease: func(from string, p []byte) error { handled = append(handled, string(p)); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close()
	ft.syncWith(t, mu, []string{"2"}, 3)
	// Peer 2 released before it learned that 1 restarted: the RELEASE names
	// incarnation 6, which is dead.
	ft.in <- Message{Kind: Release, From: "2", To: "1", Clock: 40, Payload: []byte("block 5"), Incarnation: 6}
	if _, err := mu.State(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := mu.Stats()
	if st.Stale != 1 {
		t.Fatalf("Stats.Stale = %d, want 1 (the Machine should ignore the RELEASE)", st.Stale)
	}
	if len(handled) != 0 {
		t.Errorf("OnRelease handled %q from a RELEASE that the Machine ignored as stale (meant for a dead incarnation)", handled)
	}
}

// TestReviewLockIgnoresCtxWhileSendBlocks: the driver calls Transport.Send
// with a context that is cancelled only when the driver exits. The
// contract lets Send block while the queue to a peer is full (a peer that is
// down or cut off: ChanOptions.QueueLimit, TCPConfig.SendQueue), "never past
// ctx". So the driver can block forever, and with it every caller: Lock's
// ctx is not honoured (Lock's own enqueue, and its withdrawal, wait for the
// driver without a bound), and Close hangs although closeSendTimeout
// promises a bound.
func TestReviewLockIgnoresCtxWhileSendBlocks(t *testing.T) {
	ft := newFakeTransport("1", 1)
	unblock := make(chan struct{})
	blocked := make(chan context.Context, 16)
	ft.send = func(ctx context.Context, msg Message) error {
		if msg.To != "3" || msg.Kind == Hello {
			return nil
		}
		// Peer 3 is down and its queue is full: wait for room or ctx.
		select {
		case blocked <- ctx:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-unblock:
			return nil
		}
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { close(unblock) }) }
	defer func() { release(); _ = mu.Close() }()
	ft.syncWith(t, mu, []string{"2", "3"}, 1)

	ctx, cancel := context.WithCancel(context.Background())
	lockErr := make(chan error, 1)
	go func() {
		_, err := mu.Lock(ctx)
		lockErr <- err
	}()
	sendCtx := <-blocked // the REQUEST to 3 waits for room
	cancel()
	returned := false
	select {
	case err := <-lockErr:
		returned = true
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Lock = %v, want context.Canceled", err)
		}
	case <-time.After(reviewBound):
		t.Errorf("Lock did not return within %v of its ctx being cancelled: the driver is stuck in Transport.Send", reviewBound)
	}

	closed := make(chan error, 1)
	go func() { closed <- mu.Close() }()
	select {
	case <-sendCtx.Done():
	case <-closed:
	case <-time.After(closeSendTimeout + reviewBound):
		t.Errorf("Close did not return, nor cancel the blocked Send, within %v", closeSendTimeout+reviewBound)
	}
	release()
	if !returned {
		<-lockErr // returns once the driver moves on
	}
}

// TestReviewReleaseLostOnSendError: a RELEASE the Transport refuses (e.g.
// transport.TCP's ErrFrameTooLarge for a payload over MaxFrameSize) is only
// logged and counted: Unlock returns nil, this peer no longer holds or
// requests, but the peer that never got the RELEASE keeps our request at
// the head of its queue, so nobody can ever enter again. Unlock should
// refuse (and keep the lock) or at least report the failure.
func TestReviewReleaseLostOnSendError(t *testing.T) {
	ft := newFakeTransport("1", 1)
	errTooLarge := errors.New("frame too large")
	ft.send = func(_ context.Context, msg Message) error {
		if len(msg.Payload) > 8 {
			return errTooLarge
		}
		return nil
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close()
	ft.syncWith(t, mu, []string{"2"}, 1)
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	// Wait for the REQUEST, then answer it.
	for {
		st, err := mu.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting > 0 && len(st.Queue) > 0 {
			break
		}
	}
	for len(ft.sentTo("2", Request)) == 0 { // a pump hands it over
		runtime.Gosched()
	}
	req := ft.sentTo("2", Request)[0]
	ft.in <- Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	uerr := mu.Unlock([]byte("a payload that is too large"))
	if uerr != nil {
		return // refused up front, still holding: fine
	}
	// Unlock only queued the release; the Transport refuses it afterwards.
	// The Mutex must then stop, loudly, rather than go on as if 2 knew.
	for {
		_, err := mu.State(context.Background())
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrTransport) || !errors.Is(err, ErrClosed) {
			t.Fatalf("after a refused RELEASE: %v, want ErrClosed wrapping ErrTransport", err)
		}
		break
	}
	if _, err := mu.Lock(context.Background()); !errors.Is(err, ErrTransport) {
		t.Fatalf("Lock after a refused RELEASE: %v, want ErrTransport", err)
	}
	if mu.Stats().SendErrors != 1 {
		t.Fatalf("SendErrors = %d, want 1", mu.Stats().SendErrors)
	}
}

// limitedTransport is a fakeTransport that declares its payload limit.
type limitedTransport struct {
	*fakeTransport
	limit int
}

func (l limitedTransport) MaxPayload() int { return l.limit }

// A Transport that declares its limit makes Unlock refuse a larger payload
// while the lock is still held, so nothing is lost.
func TestUnlockPayloadLimit(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: limitedTransport{ft, 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close()
	ft.syncWith(t, mu, []string{"2"}, 1)
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	for len(ft.sentTo("2", Request)) == 0 {
		runtime.Gosched()
	}
	req := ft.sentTo("2", Request)[0]
	ft.in <- Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if err := mu.Unlock([]byte("more than eight bytes")); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Unlock with a large payload = %v, want ErrPayloadTooLarge", err)
	}
	if st, _ := mu.State(context.Background()); !st.Held {
		t.Fatal("the lock must still be held after a refused payload")
	}
	if err := mu.Unlock([]byte("small")); err != nil {
		t.Fatal(err)
	}
}

// boundedNet is a tiny Transport network whose links hold at most limit
// messages not yet taken by the receiver's driver (as ChanOptions.QueueLimit
// and TCPConfig.SendQueue do), and can be cut (messages held, not lost).
type boundedNet struct {
	limit int
	eps   map[string]*boundedEP
	links map[[2]string]*boundedLink
	done  chan struct{}
	wg    sync.WaitGroup
	// blocked gets the sender's id each time a Send waits for room.
	blocked chan string
	smu     sync.Mutex
	sends   map[string]int // Sends accepted, per sender
}

func (n *boundedNet) sendCount(id string) int {
	n.smu.Lock()
	defer n.smu.Unlock()
	return n.sends[id]
}

type boundedEP struct {
	net *boundedNet
	id  string
	in  chan Message
}

type boundedLink struct {
	q    chan Message
	mu   sync.Mutex
	open bool
	wake chan struct{}
}

func newBoundedNet(ids []string, limit int) *boundedNet {
	n := &boundedNet{limit: limit, eps: map[string]*boundedEP{}, links: map[[2]string]*boundedLink{},
		done: make(chan struct{}), blocked: make(chan string, 1024), sends: map[string]int{}}
	for _, id := range ids {
		n.eps[id] = &boundedEP{net: n, id: id, in: make(chan Message)}
	}
	for _, a := range ids {
		for _, b := range ids {
			if a == b {
				continue
			}
			// The buffer holds limit-1, the forwarder one more.
			l := &boundedLink{q: make(chan Message, limit-1), open: true, wake: make(chan struct{}, 1)}
			n.links[[2]string{a, b}] = l
			dst := n.eps[b].in
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				for {
					var m Message
					select {
					case m = <-l.q:
					case <-n.done:
						return
					}
					for {
						l.mu.Lock()
						open := l.open
						l.mu.Unlock()
						if open {
							break
						}
						select {
						case <-l.wake:
						case <-n.done:
							return
						}
					}
					select {
					case dst <- m:
					case <-n.done:
						return
					}
				}
			}()
		}
	}
	// First contact: PeerUp from every peer, on the links, so FIFO holds.
	for _, a := range ids {
		for _, b := range ids {
			if a != b {
				n.links[[2]string{a, b}].q <- Message{Kind: PeerUp, From: a, To: b, Incarnation: 1}
			}
		}
	}
	return n
}

func (n *boundedNet) cut(a, b string, cut bool) {
	for _, k := range [][2]string{{a, b}, {b, a}} {
		l := n.links[k]
		l.mu.Lock()
		l.open = !cut
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

func (n *boundedNet) close() { close(n.done); n.wg.Wait() }

func (e *boundedEP) ID() string              { return e.id }
func (e *boundedEP) Incarnation() uint64     { return 1 }
func (e *boundedEP) Receive() <-chan Message { return e.in }
func (e *boundedEP) Close() error            { return nil }

func (e *boundedEP) Send(ctx context.Context, msg Message) error {
	l := e.net.links[[2]string{e.id, msg.To}]
	if l == nil {
		return fmt.Errorf("unknown peer %q", msg.To)
	}
	accepted := func() error {
		e.net.smu.Lock()
		e.net.sends[e.id]++
		e.net.smu.Unlock()
		return nil
	}
	select {
	case l.q <- msg:
		return accepted()
	default:
	}
	select {
	case e.net.blocked <- e.id:
	default:
	}
	select {
	case l.q <- msg:
		return accepted()
	case <-ctx.Done():
		return ctx.Err()
	case <-e.net.done:
		return errors.New("network closed")
	}
}

// TestReviewBoundedQueueDeadlock: all peers up, yet no Lock is ever granted
// again. Peers 1 and 2 are cut off from each other for a while (messages
// held, as the contract requires), and each abandons Lock calls (ctx
// cancelled): every abandoned call puts a REQUEST and a RELEASE on the
// held link. Once a link is full, its sender's driver blocks in Send
// (with a ctx that never ends), so it stops reading its inbound channel.
// When both are blocked, healing the cut does not help: each link waits
// for a driver that waits for the other. With transport.TCP the same
// happens after SendQueue/2 (512) abandoned Locks on each side; with
// transport.ChanNetwork after QueueLimit/2.
func TestReviewBoundedQueueDeadlock(t *testing.T) {
	ids := []string{"1", "2"}
	n := newBoundedNet(ids, 2)
	mus := map[string]*Mutex{}
	for _, id := range ids {
		mu, err := New(Config{ID: id, Peers: ids, Transport: n.eps[id]})
		if err != nil {
			t.Fatal(err)
		}
		mus[id] = mu
	}
	defer func() {
		n.close() // unblocks the drivers' Sends
		for _, mu := range mus {
			_ = mu.Close()
		}
	}()
	// Wait for first contact: both synced.
	for _, id := range ids {
		for {
			st, err := mus[id].State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Clock >= 2 {
				break
			}
		}
	}
	n.cut("1", "2", true)
	for len(n.blocked) > 0 { // forget momentary waits during first contact
		<-n.blocked
	}
	// Each peer abandons Lock calls until its driver blocks in Send.
	var wg sync.WaitGroup
	stuck := map[string]chan struct{}{"1": make(chan struct{}), "2": make(chan struct{})}
	go func() {
		seen := map[string]bool{}
		for id := range n.blocked {
			if !seen[id] {
				seen[id] = true
				close(stuck[id])
			}
			if len(seen) == 2 {
				return
			}
		}
	}()
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				before := n.sendCount(id)
				go func() {
					defer close(done)
					_, _ = mus[id].Lock(ctx)
				}()
				// Let the request go out, then give up.
				for n.sendCount(id) == before {
					select {
					case <-stuck[id]:
						cancel()
						return
					default:
						runtime.Gosched()
					}
				}
				cancel()
				select {
				case <-done:
				case <-stuck[id]:
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-stuck["1"]:
	default:
		t.Skip("peer 1's driver never blocked; scenario not reached")
	}
	select {
	case <-stuck["2"]:
	default:
		t.Skip("peer 2's driver never blocked; scenario not reached")
	}
	n.cut("1", "2", false) // every peer is up and every link open again
	ctx, cancel := context.WithTimeout(context.Background(), reviewBound)
	defer cancel()
	if _, err := mus["1"].Lock(ctx); err != nil {
		t.Errorf("after the cut healed, with every peer up, Lock = %v: the two drivers are deadlocked in Send", err)
		return
	}
	_ = mus["1"].Unlock(nil)
}

// reviewSimConfig is one kind of run of the review's wider simulation.
type reviewSimConfig struct {
	n        int
	steps    int
	crashPct int  // per-step crash probability, in percent
	twice    bool // a crash is sometimes followed at once by another of the same peer
	holder   bool // crashes hit the holder (or a releaser) more often
	dropOld  bool // messages addressed to a dead incarnation are sometimes dropped at delivery
	broken   bool // fault: Machines ignore the latest rule (checker check only)
	strict   bool // grant order starts afresh only when no live Machine remembers the greatest grant
}

func runReviewSimBroken(seed uint64, cfg reviewSimConfig) (int, error) {
	cfg.broken = true
	return runReviewSim(seed, cfg, nil)
}

// reviewConfigFor derives a configuration from a seed: 2 to 7 peers,
// crash rates up to 25% per step.
func reviewConfigFor(seed uint64, steps int) reviewSimConfig {
	return reviewSimConfig{
		n:        2 + int(seed%6),
		steps:    steps,
		crashPct: []int{1, 3, 8, 15, 25}[(seed/6)%5],
		twice:    (seed/30)%2 == 0,
		holder:   (seed/60)%2 == 0,
		dropOld:  (seed/120)%2 == 0,
	}
}

// runReviewSim is runSim with more peers, heavier and nastier crashes, and
// transports that drop messages addressed to dead incarnations.
func runReviewSim(seed uint64, cfg reviewSimConfig, logf func(string, ...any)) (int, error) {
	rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
	c, err := newCluster(peerIDs(cfg.n), cfg.broken, true)
	if err != nil {
		return 0, err
	}
	c.logf = logf
	k := newChecker(cfg.n)
	entries := make([]int, cfg.n)
	deliver := func() (bool, error) {
		var links [][2]int
		for f := range c.links {
			for t, l := range c.links[f] {
				if len(l) > 0 {
					links = append(links, [2]int{f, t})
				}
			}
		}
		if len(links) == 0 {
			return false, nil
		}
		l := links[rng.IntN(len(links))]
		f, t := l[0], l[1]
		e := c.links[f][t][0]
		if cfg.dropOld && e.msg.Kind != PeerUp && e.msg.Incarnation != uint64(c.inc[t]) && rng.IntN(2) == 0 {
			// The transport drops a message for a dead incarnation.
			c.links[f][t] = c.links[f][t][1:]
			c.forget([]envelope{e})
			c.say("transport drops %v (for a dead incarnation)", e.msg)
			return true, nil
		}
		return true, c.deliver(f, t, 0)
	}
	release := func(p int) error {
		entries[p]++
		return c.release(p, fmt.Appendf(nil, "%s:%d:%d", c.ids[p], c.inc[p], entries[p]))
	}
	pick := func(ok func(*Machine) bool) int {
		start := rng.IntN(cfg.n)
		for i := range cfg.n {
			if p := (start + i) % cfg.n; ok(c.ms[p]) {
				return p
			}
		}
		return -1
	}
	crash := func(p int) error {
		keep := make([]int, cfg.n)
		drop := make([]bool, cfg.n)
		for q := range cfg.n {
			keep[q] = rng.IntN(len(c.links[p][q]) + 1)
			drop[q] = rng.IntN(2) == 0
		}
		if err := c.crash(p, keep, drop); err != nil {
			return err
		}
		if !cfg.strict {
			k.crashed(c, p)
			return nil
		}
		k.held[p] = false
		known := false
		for q, m := range c.ms {
			known = known || q != p && m.clock >= k.maxTok.Clock
		}
		if k.haveMax && !known {
			k.haveMax = false
			k.resets++
		}
		return nil
	}
	step := func() error {
		r := rng.IntN(100)
		switch {
		case r < cfg.crashPct:
			p := rng.IntN(cfg.n)
			if h := c.holder(); cfg.holder && h >= 0 && rng.IntN(2) == 0 {
				p = h
			}
			if err := crash(p); err != nil {
				return err
			}
			if cfg.twice && rng.IntN(3) == 0 {
				return crash(p)
			}
			return nil
		case r < cfg.crashPct+15:
			if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
				return c.request(p)
			}
		case r < cfg.crashPct+28:
			if p := c.holder(); p >= 0 {
				if err := release(p); err != nil {
					return err
				}
				if cfg.holder && rng.IntN(100) < cfg.crashPct {
					return crash(p) // between the deliveries of its release
				}
				return nil
			}
		case r < cfg.crashPct+32:
			if p := pick(func(m *Machine) bool { return m.Requesting() && !m.held }); p >= 0 {
				return c.release(p, nil)
			}
		}
		if ok, err := deliver(); ok || err != nil {
			return err
		}
		if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
			return c.request(p)
		}
		if p := c.holder(); p >= 0 {
			return release(p)
		}
		return fmt.Errorf("deadlock: every peer requests, none holds, no message in flight")
	}
	steps := 0
	for ; steps < cfg.steps; steps++ {
		if err := step(); err != nil {
			return steps, fmt.Errorf("step %d: %w", steps, err)
		}
		if err := k.check(c); err != nil {
			return steps, fmt.Errorf("step %d: %w", steps, err)
		}
	}
	for limit := steps + 200_000; ; steps++ {
		if steps >= limit {
			return steps, fmt.Errorf("step %d: liveness: still busy", steps)
		}
		var err error
		if p := c.holder(); p >= 0 {
			err = release(p)
		} else if ok, derr := deliver(); derr != nil {
			err = derr
		} else if !ok {
			break
		}
		if err == nil {
			err = k.check(c)
		}
		if err != nil {
			return steps, fmt.Errorf("step %d: %w", steps, err)
		}
	}
	for _, m := range c.ms {
		if outstanding(m) {
			return steps, fmt.Errorf("step %d: liveness violated: all quiet but %s", steps, machineString(m))
		}
	}
	// Every peer must also be synced and every queue empty.
	for _, m := range c.ms {
		if !m.Synced() || len(m.q) != 0 {
			return steps, fmt.Errorf("step %d: quiet but %s", steps, machineString(m))
		}
	}
	return steps, nil
}

// TestReviewSimulation runs the wider simulation: 600 seeds of 300 steps
// normally; LAMPORT_REVIEW_SOAK=steps runs seeds of 3000 steps until that
// many steps; LAMPORT_REVIEW_SEED=n replays one seed with a trace.
func TestReviewSimulation(t *testing.T) {
	if seed, ok := envUint(t, "LAMPORT_REVIEW_SEED"); ok {
		steps := 3000
		if n, ok := envUint(t, "LAMPORT_REVIEW_STEPS"); ok {
			steps = int(n)
		}
		cfg := reviewConfigFor(seed, steps)
		cfg.strict = os.Getenv("LAMPORT_REVIEW_STRICT") != ""
		var trace strings.Builder
		n, err := runReviewSim(seed, cfg, func(f string, a ...any) { fmt.Fprintf(&trace, f+"\n", a...) })
		t.Logf("seed %d %+v, %d steps:\n%s", seed, cfg, n, trace.String())
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	soak, isSoak := envUint(t, "LAMPORT_REVIEW_SOAK")
	steps, seeds := 300, uint64(600)
	if raceEnabled {
		seeds = 200
	}
	if isSoak {
		steps = 3000
	}
	total, first := 0, uint64(1)
	if f, ok := envUint(t, "LAMPORT_REVIEW_FIRST"); ok {
		first = f
	}
	start := time.Now()
	var seed uint64
	for seed = first; isSoak && uint64(total) < soak || !isSoak && seed < first+seeds; seed++ {
		cfg := reviewConfigFor(seed, steps)
		n, err := runReviewSim(seed, cfg, nil)
		total += n
		if err != nil {
			t.Fatalf("seed %d %+v: %v\nreplay: LAMPORT_REVIEW_SEED=%d LAMPORT_REVIEW_STEPS=%d go test ./lamportmutex -run TestReviewSimulation -v",
				seed, cfg, err, seed, steps)
		}
	}
	t.Logf("%d seeds, %d steps in %v", seed-first, total, time.Since(start).Round(time.Millisecond))
}

// TestReviewStrictGrantOrder looks for a grant whose token is not greater
// than an earlier one while some live Machine still remembers the greatest
// grant (Token's doc promises that tokens of successive grants strictly
// increase; the checker excuses every crash that overlaps a restart).
// Only with LAMPORT_REVIEW_SOAK.
func TestReviewStrictGrantOrder(t *testing.T) {
	soak, ok := envUint(t, "LAMPORT_REVIEW_SOAK")
	if !ok {
		t.Skip("set LAMPORT_REVIEW_SOAK")
	}
	total := 0
	for seed := uint64(1); uint64(total) < soak; seed++ {
		cfg := reviewConfigFor(seed, 1000)
		cfg.strict = true
		n, err := runReviewSim(seed, cfg, nil)
		total += n
		if err != nil {
			t.Fatalf("seed %d %+v: %v", seed, cfg, err)
		}
	}
}

// TestReviewSimulationCatches checks that the wider simulation can fail:
// Machines that ignore the latest rule must be caught.
func TestReviewSimulationCatches(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		cfg := reviewConfigFor(seed, 300)
		if _, err := runReviewSimBroken(seed, cfg); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return
		}
	}
	t.Fatal("no violation found with skipLatest set")
}

// crashExplorer visits every state reachable from n fresh Machines (or
// booted ones) where each peer makes up to budget requests, up to
// withdrawals are withdrawn, up to crashes crashes happen, each in every
// way the contract allows (every prefix of each outbound link survives,
// each inbound link is dropped or kept), and a transport may drop any
// message addressed to a dead incarnation. Every state is checked; a
// state where nothing but a crash can happen must have no request
// outstanding.
type crashExplorer struct {
	n, budget, withdrawals, crashes int
	booted                          bool
	broken                          bool // fault: Machines ignore the latest rule
	limit                           int

	seen  map[[16]byte]struct{}
	terms int
	buf   []byte
	h1    maphash.Seed
	h2    maphash.Seed
	path  []string
}

type cxState struct {
	c       *cluster
	k       *checker
	budget  []int
	withdr  int
	crashes int
	entries int
}

type cxMove struct {
	kind     byte // 'd' deliver, 'x' drop (dead incarnation), 'r', 'l', 'w', 'c' crash
	from, to int
	keep     []int
	drop     []bool
}

func (x *crashExplorer) run() error {
	c, err := newCluster(peerIDs(x.n), x.broken, false)
	if err != nil {
		return err
	}
	if x.booted {
		if err := boot(c); err != nil {
			return err
		}
	}
	s := &cxState{c: c, k: newChecker(x.n), budget: make([]int, x.n), withdr: x.withdrawals, crashes: x.crashes}
	for i := range s.budget {
		s.budget[i] = x.budget
	}
	x.seen = map[[16]byte]struct{}{}
	x.h1, x.h2 = maphash.MakeSeed(), maphash.MakeSeed()
	return x.dfs(s)
}

func (x *crashExplorer) moves(s *cxState) (moves []cxMove, other int) {
	c := s.c
	for f := range c.ids {
		for t := range c.ids {
			if len(c.links[f][t]) == 0 {
				continue
			}
			moves = append(moves, cxMove{kind: 'd', from: f, to: t})
			if e := c.links[f][t][0]; e.msg.Kind != PeerUp && e.msg.Incarnation != uint64(c.inc[t]) {
				moves = append(moves, cxMove{kind: 'x', from: f, to: t})
			}
		}
	}
	for p, m := range c.ms {
		switch {
		case m.held:
			moves = append(moves, cxMove{kind: 'l', from: p})
		case m.Requesting():
			if s.withdr > 0 {
				moves = append(moves, cxMove{kind: 'w', from: p})
			}
		case s.budget[p] > 0:
			moves = append(moves, cxMove{kind: 'r', from: p})
		}
	}
	other = len(moves)
	if s.crashes > 0 {
		for p := range c.ids {
			// Every combination of kept prefixes and inbound drops.
			var rec func(q int, keep []int, drop []bool)
			rec = func(q int, keep []int, drop []bool) {
				if q == len(c.ids) {
					moves = append(moves, cxMove{kind: 'c', from: p, keep: slices.Clone(keep), drop: slices.Clone(drop)})
					return
				}
				if q == p {
					rec(q+1, keep, drop)
					return
				}
				for k := 0; k <= len(c.links[p][q]); k++ {
					for _, d := range []bool{false, true} {
						if d && len(c.links[q][p]) == 0 {
							continue // nothing to drop: same as keeping
						}
						keep[q], drop[q] = k, d
						rec(q+1, keep, drop)
					}
				}
			}
			rec(0, make([]int, x.n), make([]bool, x.n))
		}
	}
	return moves, other
}

func (s *cxState) apply(mv cxMove) error {
	c := s.c
	switch mv.kind {
	case 'd':
		return c.deliver(mv.from, mv.to, 0)
	case 'x':
		c.links[mv.from][mv.to] = c.links[mv.from][mv.to][1:]
		return nil
	case 'r':
		s.budget[mv.from]--
		return c.request(mv.from)
	case 'l':
		s.entries++
		return c.release(mv.from, fmt.Appendf(nil, "e%d", s.entries))
	case 'w':
		s.withdr--
		return c.release(mv.from, nil)
	default:
		s.crashes--
		if err := c.crash(mv.from, mv.keep, mv.drop); err != nil {
			return err
		}
		s.k.crashed(c, mv.from)
		return nil
	}
}

func (s *cxState) describe(mv cxMove) string {
	c := s.c
	switch mv.kind {
	case 'd':
		return fmt.Sprintf("deliver %v", c.links[mv.from][mv.to][0].msg)
	case 'x':
		return fmt.Sprintf("drop %v (for a dead incarnation)", c.links[mv.from][mv.to][0].msg)
	case 'r':
		return "request " + c.ids[mv.from]
	case 'l':
		return "release " + c.ids[mv.from]
	case 'w':
		return "withdraw " + c.ids[mv.from]
	default:
		return fmt.Sprintf("crash %s keep=%v dropIn=%v", c.ids[mv.from], mv.keep, mv.drop)
	}
}

func (x *crashExplorer) dfs(s *cxState) error {
	key := x.key(s)
	if _, ok := x.seen[key]; ok {
		return nil
	}
	x.seen[key] = struct{}{}
	if x.limit > 0 && len(x.seen) > x.limit {
		return errStateLimit
	}
	moves, other := x.moves(s)
	if other == 0 {
		x.terms++
		for _, m := range s.c.ms {
			if outstanding(m) {
				return fmt.Errorf("deadlock: nothing but a crash can happen, but %s\ntrace:\n  %s", machineString(m), strings.Join(x.path, "\n  "))
			}
		}
	}
	for _, mv := range moves {
		t := &cxState{c: s.c.clone(), k: s.k.clone(), budget: slices.Clone(s.budget), withdr: s.withdr, crashes: s.crashes, entries: s.entries}
		x.path = append(x.path, t.describe(mv))
		err := t.apply(mv)
		if err == nil {
			err = t.k.check(t.c)
		}
		if err != nil {
			return fmt.Errorf("%w\ntrace:\n  %s", err, strings.Join(x.path, "\n  "))
		}
		if err := x.dfs(t); err != nil {
			return err
		}
		x.path = x.path[:len(x.path)-1]
	}
	return nil
}

func (x *crashExplorer) key(s *cxState) [16]byte {
	b := x.buf[:0]
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	flag := func(v bool) {
		if v {
			u(1)
		} else {
			u(0)
		}
	}
	tok := func(t Token) {
		u(t.Clock)
		b = append(b, t.ID...)
		b = append(b, 0)
	}
	for i, m := range s.c.ms {
		u(uint64(s.c.inc[i]))
		u(m.inc)
		u(m.clock)
		u(uint64(len(m.q)))
		for _, t := range m.q {
			tok(t)
		}
		for j := range m.latest {
			u(m.latest[j])
			flag(m.heard[j])
			u(m.peerInc[j])
		}
		tok(m.own)
		flag(m.issued)
		flag(m.pending)
		flag(m.held)
		flag(s.k.held[i])
	}
	for _, row := range s.c.links {
		for _, l := range row {
			u(uint64(len(l)))
			for _, e := range l {
				u(uint64(e.msg.Kind))
				u(e.msg.Clock)
				u(e.msg.Incarnation)
				u(uint64(e.destInc))
				u(uint64(len(e.msg.Payload)))
				b = append(b, e.msg.Payload...)
			}
		}
	}
	for _, v := range s.budget {
		u(uint64(v))
	}
	u(uint64(s.withdr))
	u(uint64(s.crashes))
	u(uint64(s.entries))
	tok(s.k.maxTok)
	flag(s.k.haveMax)
	x.buf = b
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:8], maphash.Bytes(x.h1, b))
	binary.LittleEndian.PutUint64(k[8:], maphash.Bytes(x.h2, b))
	return k
}

// TestReviewExploreCrashes explores every interleaving, crashes included,
// of small configurations. The larger ones run with LAMPORT_REVIEW_SOAK.
func TestReviewExploreCrashes(t *testing.T) {
	type config struct {
		n, budget, withdrawals, crashes int
		booted, heavy, big              bool
	}
	t.Run("catches skipLatest", func(t *testing.T) {
		x := &crashExplorer{n: 2, budget: 1, crashes: 1, broken: true}
		if err := x.run(); err == nil {
			t.Fatalf("no violation found with skipLatest set (%d states)", len(x.seen))
		}
	})
	configs := []config{
		{n: 2, budget: 1, crashes: 1},
		{n: 2, budget: 1, crashes: 2, heavy: true},
		{n: 2, budget: 2, crashes: 1, heavy: true},
		{n: 2, budget: 1, withdrawals: 1, crashes: 1},
		{n: 2, budget: 2, crashes: 2, big: true},
		{n: 2, budget: 2, withdrawals: 1, crashes: 2, big: true},
		{n: 3, budget: 1, crashes: 1, booted: true, big: true},
		{n: 3, budget: 1, crashes: 2, booted: true, big: true},
	}
	_, soak := envUint(t, "LAMPORT_REVIEW_SOAK")
	for _, cf := range configs {
		name := fmt.Sprintf("peers=%d/entries=%d/withdrawals=%d/crashes=%d/booted=%v", cf.n, cf.budget, cf.withdrawals, cf.crashes, cf.booted)
		t.Run(name, func(t *testing.T) {
			if cf.big && !soak || cf.heavy && raceEnabled && !soak {
				t.Skip("large: set LAMPORT_REVIEW_SOAK")
			}
			start := time.Now()
			x := &crashExplorer{n: cf.n, budget: cf.budget, withdrawals: cf.withdrawals, crashes: cf.crashes, booted: cf.booted}
			if err := x.run(); err != nil {
				t.Fatalf("after %d states: %v", len(x.seen), err)
			}
			t.Logf("%d distinct states, %d terminal, in %v", len(x.seen), x.terms, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestReviewGrantOrderOverlappingRestarts: Token's doc promises that
// tokens of successive grants strictly increase (a fencing token). Across
// overlapping restarts they do not, although a live Machine remembers the
// greatest grant all along: 1 is granted (29,1); 2 and 3 restart and greet
// each other with low clocks; 1 greets the new 3 (whose clock so passes
// the grant) and then crashes before greeting the new 2. The new 2 is
// then synced by two low HELLOs and is granted a smaller token, while the
// new 3 still remembers a clock above the earlier grant. (Found by the
// strict variant of the review simulation, seed 589, 3 peers.)
func TestReviewGrantOrderOverlappingRestarts(t *testing.T) {
	c, err := newCluster(peerIDs(3), false, true)
	if err != nil {
		t.Fatal(err)
	}
	c.logf = t.Logf
	do := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	drain := func(from, to int) {
		t.Helper()
		for len(c.links[from][to]) > 0 {
			do("deliver", c.deliver(from, to, 0))
		}
	}
	all := func(p int) []int { return []int{p, p, p} }
	const p1, p2, p3 = 0, 1, 2
	do("boot", boot(c))
	var first Token
	for range 5 { // a few entries, so that clocks are well past a fresh start
		do("request 1", c.request(p1))
		do("settle", boot(c))
		first, _ = c.ms[p1].Own()
		if !c.ms[p1].Held() {
			t.Fatalf("1 should hold: %s", machineString(c.ms[p1]))
		}
		do("release 1", c.release(p1, []byte("x")))
		do("settle", boot(c))
	}
	// Each restarted peer starts from the clock it kept, as Config.StartClock
	// does with the clock of the ledger's last block. Without that, the new
	// 2 below is granted (6,2) after (29,1): the order across overlapping
	// restarts is owed only to a peer that keeps its clock (see the package
	// doc).
	do("restart 2", c.crash(p2, all(99), []bool{true, true, true}))
	c.ms[p2].AdvanceClock(first.Clock)
	do("restart 3", c.crash(p3, all(99), []bool{true, true, true}))
	c.ms[p3].AdvanceClock(first.Clock)
	do("request 2", c.request(p2)) // held back: not synced
	// The new 2 and the new 3 greet each other with low clocks.
	drain(p2, p3)
	drain(p3, p2)
	drain(p2, p3)
	// 1 greets the new 3 (HELLO with 1's clock), which learns the clock.
	drain(p3, p1)
	drain(p1, p3)
	if c.ms[p3].Clock() <= first.Clock {
		t.Fatalf("3 should remember a clock above %v: %s", first, machineString(c.ms[p3]))
	}
	// 1 crashes before handling PEERUP from the new 2.
	do("restart 1", c.crash(p1, all(0), []bool{true, true, true}))
	c.ms[p1].AdvanceClock(first.Clock)
	do("settle", boot(c))
	for c.holder() < 0 && c.busy() {
		do("settle", boot(c))
	}
	if h := c.holder(); h != p2 {
		t.Fatalf("expected 2 to hold; holder %d", h)
	}
	tok, _ := c.ms[p2].Own()
	if !first.Less(tok) {
		t.Errorf("grant order: 2 is granted %v after %v was granted, while 3 (never down since) remembers clock %d: %s",
			tok, first, c.ms[p3].Clock(), machineString(c.ms[p3]))
	}
}
