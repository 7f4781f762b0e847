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
	quar []quarantined // Quarantine calls, in order
}

// quarantined is one call of Transport.Quarantine.
type quarantined struct {
	peer  string
	inc   uint64
	cause error
}

func newFakeTransport(id string, inc uint64) *fakeTransport {
	return &fakeTransport{id: id, inc: inc, in: make(chan Message)}
}

func (f *fakeTransport) ID() string              { return f.id }
func (f *fakeTransport) Incarnation() uint64     { return f.inc }
func (f *fakeTransport) Receive() <-chan Message { return f.in }
func (f *fakeTransport) Close() error            { return nil }

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
	f.in <- Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1}
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
	ft.lockAnswered(t, mu)
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
	ft.lockAnswered(t, mu)
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

func (e *boundedEP) ID() string                       { return e.id }
func (e *boundedEP) Incarnation() uint64              { return 1 }
func (e *boundedEP) Receive() <-chan Message          { return e.in }
func (e *boundedEP) Quarantine(string, uint64, error) {}
func (e *boundedEP) Close() error                     { return nil }

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
		for mus[id].Stats().Received[Hello] == 0 {
			runtime.Gosched()
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
	if err := mu.Close(); err != nil {
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
	if err := mu.do(context.Background(), func(d *driver) { d.enqueue(w) }); err != nil {
		t.Fatal(err)
	}
	waitSent(t, ft, "2", Request, 1)
	req := ft.sentTo("2", Request)[0]
	ft.in <- Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1}
	if st, err := mu.State(context.Background()); err != nil || !st.Held {
		t.Fatalf("not granted: %+v %v", st, err)
	}
	if err := mu.Close(); err != nil {
		t.Fatal(err)
	}
	if len(ft.sentTo("2", Release)) != 1 {
		t.Fatal("Close kept a lock whose grant no caller received")
	}
}
