package lamportmutex

// Tests of the Mutex driver against Transports the test controls: stale
// payloads after a restart, a Transport whose queue is full, a refused
// RELEASE, a payload limit. They began as an adversarial review; each
// failed before its fix.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// reviewBound bounds waits for something that, without the bug, happens at
// once. It is only used to turn a hang into a failure.
const reviewBound = 30 * time.Second

// fakeTransport is a Transport driven by the test. feed delivers a message
// on the test's goroutine, so when it returns the Mutex has handled it.
type fakeTransport struct {
	id      string
	inc     uint64
	max     int                     // MaxPayload; 0: 1 MiB
	deliver func(Message)           // set by Start
	send    func(msg Message) error // nil: accept

	mu    sync.Mutex
	sent  []Message
	calls [][]Message   // the messages of each Send call, in order
	quar  []quarantined // Quarantine calls, in order
}

// quarantined is one call of Transport.Quarantine.
type quarantined struct {
	peer  string
	inc   uint64
	cause error
}

func newFakeTransport(id string, inc uint64) *fakeTransport {
	return &fakeTransport{id: id, inc: inc}
}

func (f *fakeTransport) ID() string                        { return f.id }
func (f *fakeTransport) Incarnation() uint64               { return f.inc }
func (f *fakeTransport) Start(deliver func(Message)) error { f.deliver = deliver; return nil }
func (f *fakeTransport) Flush(ctx context.Context) error   { return ctx.Err() }
func (f *fakeTransport) Close(context.Context) error       { return nil }

func (f *fakeTransport) MaxPayload() int {
	if f.max == 0 {
		return 1 << 20
	}
	return f.max
}

// feed delivers msg to the Mutex, as the Transport's goroutine would.
func (f *fakeTransport) feed(msg Message) { f.deliver(msg) }

func (f *fakeTransport) Quarantine(peer string, inc uint64, cause error) {
	f.mu.Lock()
	f.quar = append(f.quar, quarantined{peer, inc, cause})
	f.mu.Unlock()
}

// quarantines returns the peers and incarnations quarantined so far, as
// "peer#inc".
func (f *fakeTransport) quarantines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, q := range f.quar {
		out = append(out, fmt.Sprintf("%s#%d", q.peer, q.inc))
	}
	return out
}

func (f *fakeTransport) Send(msgs ...Message) error {
	if f.send != nil {
		for _, msg := range msgs {
			if err := f.send(msg); err != nil {
				return err
			}
		}
	}
	f.mu.Lock()
	f.sent = append(f.sent, msgs...)
	f.calls = append(f.calls, slices.Clone(msgs))
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
		f.feed(Message{Kind: PeerUp, From: p, To: f.id, Incarnation: peerInc})
		f.feed(Message{Kind: Hello, From: p, To: f.id, Clock: 1, Incarnation: f.inc})
	}
}

// TestReviewStaleReleasePayloadHandled: the driver hands a RELEASE's
// payload to HandleRelease before the Machine has judged the message; a RELEASE
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
		Handler: funcHandler{release: func(from string, p []byte) error { handled = append(handled, string(p)); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 3)
	// Peer 2 released before it learned that 1 restarted: the RELEASE names
	// incarnation 6, which is dead.
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 40, Payload: []byte("block 5"), Incarnation: 6})
	st := mu.Stats()
	if st.Stale != 1 {
		t.Fatalf("Stats.Stale = %d, want 1 (the Machine should ignore the RELEASE)", st.Stale)
	}
	if len(handled) != 0 {
		t.Errorf("HandleRelease handled %q from a RELEASE that the Machine ignored as stale (meant for a dead incarnation)", handled)
	}
}

// A peer whose queue at the Transport is full does not read what it is
// sent: it loses its session (quarantined), and the Mutex goes on: Lock
// honours its ctx and Close returns, since Send never blocks.
func TestFullQueueQuarantinesThePeer(t *testing.T) {
	ft := newFakeTransport("1", 1)
	ft.send = func(msg Message) error {
		if msg.To == "3" && msg.Kind == Request {
			return fmt.Errorf("queue to 3: %w", ErrQueueFull)
		}
		return nil
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2", "3"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	lockErr := make(chan error, 1)
	go func() {
		_, err := mu.Lock(ctx)
		lockErr <- err
	}()
	for len(ft.quarantines()) == 0 {
		runtime.Gosched()
	}
	if got := ft.quarantines(); len(got) != 1 || got[0] != "3#1" {
		t.Fatalf("quarantined %v, want [3#1]", got)
	}
	cancel()
	if err := <-lockErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock = %v, want context.Canceled", err)
	}
	if err := mu.Err(); err != nil {
		t.Fatalf("the Mutex stopped: %v", err)
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := mu.Stats(); st.SendErrors != 1 || st.Quarantined != 1 {
		t.Fatalf("stats %+v, want one send error and one quarantine", st)
	}
}

// lockAnswered takes mu's lock in a group of "1" and "2": it waits for the
// REQUEST to "2" (a pump hands it over) and answers it with a REPLY.
func (f *fakeTransport) lockAnswered(t *testing.T, mu *Mutex) {
	t.Helper()
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	for len(f.sentTo("2", Request)) == 0 {
		runtime.Gosched()
	}
	req := f.sentTo("2", Request)[0]
	f.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if err := <-locked; err != nil {
		t.Fatal(err)
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
	ft.send = func(msg Message) error {
		if len(msg.Payload) > 8 {
			return errTooLarge
		}
		return nil
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 1)
	ft.lockAnswered(t, mu)
	// The Transport refuses the release: the Mutex must stop, loudly,
	// rather than go on as if 2 knew.
	if err := mu.Unlock([]byte("a payload that is too large")); !errors.Is(err, ErrTransport) {
		t.Fatalf("Unlock of a refused RELEASE = %v, want ErrTransport", err)
	}
	<-mu.Done()
	if err := mu.Err(); !errors.Is(err, ErrTransport) || !errors.Is(err, ErrClosed) {
		t.Fatalf("after a refused RELEASE: %v, want ErrClosed wrapping ErrTransport", err)
	}
	if _, err := mu.Lock(context.Background()); !errors.Is(err, ErrTransport) {
		t.Fatalf("Lock after a refused RELEASE: %v, want ErrTransport", err)
	}
	if mu.Stats().SendErrors != 1 {
		t.Fatalf("SendErrors = %d, want 1", mu.Stats().SendErrors)
	}
}

// A Transport that declares its limit makes Unlock refuse a larger payload
// while the lock is still held, so nothing is lost.
func TestUnlockPayloadLimit(t *testing.T) {
	ft := newFakeTransport("1", 1)
	ft.max = 8
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2"}, 1)
	ft.lockAnswered(t, mu)
	if err := mu.Unlock([]byte("more than eight bytes")); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Unlock with a large payload = %v, want ErrPayloadTooLarge", err)
	}
	if st := mu.State(); !st.Held {
		t.Fatal("the lock must still be held after a refused payload")
	}
	if err := mu.Unlock([]byte("small")); err != nil {
		t.Fatal(err)
	}
}

// boundedNet is a tiny Transport network whose links hold at most limit
// messages not yet delivered (Send refuses more with ErrQueueFull, as the
// contract says), and can be cut: messages are held, not lost.
type boundedNet struct {
	limit int
	eps   map[string]*boundedEP
	links map[[2]string]*boundedLink
	done  chan struct{}
	wg    sync.WaitGroup
}

type boundedEP struct {
	net     *boundedNet
	id      string
	deliver chan func(Message) // Start hands over the deliver function
}

type boundedLink struct {
	mu   sync.Mutex
	q    []Message
	open bool
	wake chan struct{}
	sent int // messages accepted, in all
}

func newBoundedNet(ids []string, limit int) *boundedNet {
	n := &boundedNet{limit: limit, eps: map[string]*boundedEP{}, links: map[[2]string]*boundedLink{}, done: make(chan struct{})}
	for _, id := range ids {
		n.eps[id] = &boundedEP{net: n, id: id, deliver: make(chan func(Message), 1)}
	}
	for _, b := range ids {
		var in []*boundedLink
		for _, a := range ids {
			if a != b {
				// First contact: PeerUp, on the link, so FIFO holds.
				l := &boundedLink{q: []Message{{Kind: PeerUp, From: a, To: b, Incarnation: 1}}, open: true, wake: make(chan struct{}, 1)}
				n.links[[2]string{a, b}] = l
				in = append(in, l)
			}
		}
		ep := n.eps[b]
		for _, l := range in {
			n.wg.Add(1)
			go func() { // one delivery goroutine per link
				defer n.wg.Done()
				var deliver func(Message)
				select {
				case deliver = <-ep.deliver:
					ep.deliver <- deliver // for the other links
				case <-n.done:
					return
				}
				for {
					l.mu.Lock()
					var m Message
					ok := l.open && len(l.q) > 0
					if ok {
						m = l.q[0]
						l.q = l.q[1:]
					}
					l.mu.Unlock()
					if ok {
						deliver(m)
						continue
					}
					select {
					case <-l.wake:
					case <-n.done:
						return
					}
				}
			}()
		}
	}
	return n
}

func (l *boundedLink) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (n *boundedNet) cut(a, b string, cut bool) {
	for _, k := range [][2]string{{a, b}, {b, a}} {
		l := n.links[k]
		l.mu.Lock()
		l.open = !cut
		l.mu.Unlock()
		l.poke()
	}
}

func (n *boundedNet) close() { close(n.done); n.wg.Wait() }

func (e *boundedEP) ID() string                        { return e.id }
func (e *boundedEP) Incarnation() uint64               { return 1 }
func (e *boundedEP) Start(deliver func(Message)) error { e.deliver <- deliver; return nil }
func (e *boundedEP) Quarantine(string, uint64, error)  {}
func (e *boundedEP) Flush(context.Context) error       { return nil }
func (e *boundedEP) MaxPayload() int                   { return 1 << 10 }
func (e *boundedEP) Close(context.Context) error       { return nil }

func (e *boundedEP) Send(msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	to := msgs[0].To
	l := e.net.links[[2]string{e.id, to}]
	if l == nil {
		return fmt.Errorf("unknown peer %q", to)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.q)+len(msgs) > e.net.limit {
		return fmt.Errorf("link %s->%s: %w", e.id, to, ErrQueueFull)
	}
	l.q = append(l.q, msgs...)
	l.sent += len(msgs)
	l.poke()
	return nil
}

// Lock calls that give up while a peer is cut off add nothing to what is
// queued for it: the request stays outstanding (to be released once
// granted) and the next Lock takes it over. So a cut that lasts through
// any number of abandoned calls fills no queue, costs no peer its session,
// and once it heals the lock is granted.
func TestAbandonedLocksDuringACutQueueNothing(t *testing.T) {
	ids := []string{"1", "2"}
	n := newBoundedNet(ids, 4)
	mus := map[string]*Mutex{}
	for _, id := range ids {
		mu, err := New(Config{ID: id, Peers: ids, Transport: n.eps[id]})
		if err != nil {
			t.Fatal(err)
		}
		mus[id] = mu
	}
	defer func() {
		for _, mu := range mus {
			_ = mu.Close(context.Background())
		}
		n.close()
	}()
	for _, id := range ids { // first contact
		for mus[id].Stats().Received[Hello] == 0 {
			runtime.Gosched()
		}
	}
	n.cut("1", "2", true)
	for range 50 {
		for _, id := range ids {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = mus[id].Lock(ctx)
			}()
			<-done
			ctx, cancel = context.WithCancel(context.Background())
			go func() { runtime.Gosched(); cancel() }()
			_, _ = mus[id].Lock(ctx)
		}
	}
	for _, id := range ids {
		if st := mus[id].Stats(); st.SendErrors != 0 || st.Quarantined != 0 || mus[id].Err() != nil {
			t.Fatalf("peer %s after the abandoned calls: %+v, err %v", id, st, mus[id].Err())
		}
	}
	n.cut("1", "2", false)
	ctx, cancel := context.WithTimeout(context.Background(), reviewBound)
	defer cancel()
	if _, err := mus["1"].Lock(ctx); err != nil {
		t.Fatalf("after the cut healed, Lock = %v", err)
	}
	if err := mus["1"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
}

// Close while a caller holds the lock does not release it: a release
// without the holder's payload would let the next holder go ahead without
// the holder's update (the ledger forked on it). The peers wait for this
// peer's next incarnation instead, as after a crash.
func TestCloseWhileHeldDoesNotRelease(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	ft.lockAnswered(t, mu)
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rel := ft.sentTo("2", Release); len(rel) != 0 {
		t.Fatalf("Close while held sent %v", rel)
	}
}

// A Lock whose ctx ends just as the grant comes, with Close reaching the
// driver before the Lock's own withdrawal: no caller ever received the
// token, so Close releases the lock rather than keep it for a caller that
// does not exist (the peers would wait for an incarnation that may never
// come). The interleaving is played with the driver's own waiter: the
// grant sits in w.result and nobody reads it.
func TestCloseReleasesAGrantNoCallerReceived(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	w := &waiter{result: make(chan lockResult, 1)}
	mu.mu.Lock()
	mu.waiters = append(mu.waiters, w)
	mu.request()
	mu.flush()
	mu.mu.Unlock()
	waitSent(t, ft, "2", Request, 1)
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if st, err := mu.State(), error(nil); err != nil || !st.Held {
		t.Fatalf("not granted: %+v %v", st, err)
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(ft.sentTo("2", Release)) != 1 {
		t.Fatal("Close kept a lock whose grant no caller received")
	}
}

// Close over a Transport that is already closed: the withdrawal is refused,
// and Close still stops the Mutex once, failing the waiting Lock.
func TestCloseOverAClosedTransport(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	waitSent(t, ft, "2", Request, 1)
	ft.mu.Lock()
	ft.send = func(Message) error { return ErrClosed }
	ft.mu.Unlock()
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock = %v, want ErrClosed", err)
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// newPairMutex returns peer 1's Mutex, with no Handler, in a group of two
// over a fake Transport (incarnation 1), after first contact with peer 2
// (incarnation 1). The test's cleanup closes it.
func newPairMutex(t *testing.T) (*Mutex, *fakeTransport) {
	t.Helper()
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mu.Close(context.Background()) })
	ft.syncWith(t, mu, []string{"2"}, 1)
	return mu, ft
}
