package lamportmutex

// Attacks on the run-to-completion driver: interleavings of Lock, Close,
// the callbacks and Quarantine that the Transport contract allows.

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gateCtx is a context whose Done blocks its first caller until the test
// opens the gate: Lock evaluates ctx.Done() as it enters its select, so the
// test can run steps between Lock's queueing and its wait.
type gateCtx struct {
	entered chan struct{} // closed when Done is first called
	gate    chan struct{} // Done returns once it is closed
	never   chan struct{}
	first   bool
}

func newGateCtx() *gateCtx {
	return &gateCtx{entered: make(chan struct{}), gate: make(chan struct{}), never: make(chan struct{}), first: true}
}

func (c *gateCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *gateCtx) Err() error                  { return nil }
func (c *gateCtx) Value(any) any               { return nil }

func (c *gateCtx) Done() <-chan struct{} {
	if c.first { // only Lock's goroutine calls Done
		c.first = false
		close(c.entered)
		<-c.gate
	}
	return c.never
}

// A Lock with no deadline is granted, and Close comes before the Lock call
// has read its grant: Close releases the grant (no caller has it), and the
// Lock call must then return ErrClosed, not wait forever for a grant that
// Close took away. (Without the fix this test hangs.)
func TestCloseBeforeLockReadsItsGrant(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	ctx := newGateCtx()
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(ctx)
		locked <- err
	}()
	<-ctx.entered
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if !mu.State().Held {
		t.Fatal("not granted")
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(ctx.gate)
	if err := <-locked; !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock = %v, want ErrClosed", err)
	}
	if len(ft.sentTo("2", Release)) != 1 {
		t.Fatal("Close kept a lock whose grant no caller received")
	}
}

// A message of peer 3 is taken in while peer 2's callback runs, and waits
// for its turn; that callback then quarantines 3 (the docs allow Quarantine
// from a callback). Quarantine's promise, that the Mutex ignores everything
// further from that incarnation, covers the waiting message: its callback
// must not run, as a RELEASE's HandleRelease would not.
func TestQuarantineFromACallbackStopsAWaitingMessage(t *testing.T) {
	for _, kind := range []Kind{Data, Release} {
		t.Run(kind.String(), func(t *testing.T) {
			ft := newFakeTransport("1", 1)
			var mu *Mutex
			inCallback, proceed := make(chan struct{}), make(chan struct{})
			var from3 []string
			handle := func(from string, p []byte) error {
				if from == "2" {
					close(inCallback)
					<-proceed
					mu.Quarantine("3", errors.New("2 showed that 3 lies"))
					return nil
				}
				from3 = append(from3, string(p))
				return nil
			}
			mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
				Handler: funcHandler{message: handle, release: handle}})
			if err != nil {
				t.Fatal(err)
			}
			ft.syncWith(t, mu, []string{"2", "3"}, 1)
			done2, done3 := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done2)
				ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("evidence"), Incarnation: 1})
			}()
			<-inCallback
			go func() {
				defer close(done3)
				msg := Message{Kind: Data, From: "3", To: "1", Payload: []byte("lie"), Incarnation: 1}
				if kind == Release {
					// 3 requested and released, its RELEASE carrying a payload.
					ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: 5, Incarnation: 1})
					msg = Message{Kind: Release, From: "3", To: "1", Clock: 6, Payload: []byte("lie"), Incarnation: 1}
				}
				ft.feed(msg)
			}()
			waitInCallbackLock(t)
			close(proceed)
			<-done2
			<-done3
			if len(from3) != 0 {
				t.Errorf("the application handled %q from 3 after it quarantined 3", from3)
			}
			if err := mu.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// waitInCallbackLock waits until a goroutine waits for its turn to run a
// callback (blocked taking Mutex.cb), read from the goroutines' stacks.
func waitInCallbackLock(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if i := strings.Index(g, "sync.(*Mutex).Lock"); i >= 0 && strings.Contains(g[i:], "lamportmutex.(*Mutex).callback(") {
				return
			}
		}
		runtime.Gosched()
	}
}

// Close waits for a callback that is running on the Transport's goroutine;
// that callback's Unlock and Send get ErrClosed once Close began, and
// nothing delivered after Close returned reaches a callback.
func TestCloseWaitsForARunningCallback(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	inCallback, proceed := make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	var calls atomic.Int32
	var unlockErr, sendErr error
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft,
		Handler: funcHandler{message: func(from string, p []byte) error {
			if calls.Add(1) > 1 {
				return nil
			}
			close(inCallback)
			<-proceed
			unlockErr = mu.Unlock(nil)
			sendErr = mu.Send("2", []byte("x"))
			_ = mu.State()
			returned.Store(true)
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("a"), Incarnation: 1})
	}()
	<-inCallback
	closed := make(chan bool, 1)
	go func() {
		if err := mu.Close(context.Background()); err != nil {
			t.Error(err)
		}
		closed <- returned.Load()
	}()
	<-mu.Done()
	close(proceed)
	if !<-closed {
		t.Error("Close returned while a callback was running")
	}
	<-fed
	if !errors.Is(unlockErr, ErrClosed) || !errors.Is(sendErr, ErrClosed) {
		t.Errorf("in the callback during Close: Unlock %v, Send %v; want ErrClosed", unlockErr, sendErr)
	}
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("b"), Incarnation: 1})
	ft.feed(Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 2})
	if n := calls.Load(); n != 1 {
		t.Errorf("%d callbacks, want 1: a message delivered after Close reached the application", n)
	}
}

// A Lock whose ctx ends just as the grant comes, again and again: every
// grant is either returned or released, never lost and never released
// twice; the peer that answers sees strictly alternating REQUEST and
// RELEASE, and the lock can be taken at the end.
func TestLockCancelledAsTheGrantComes(t *testing.T) {
	mu, ft := newPairMutex(t)
	clock := uint64(100)
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			_, err := mu.Lock(ctx)
			res <- err
		}()
		waitSent(t, ft, "2", Request, i+1)
		req := ft.sentTo("2", Request)[i]
		clock = max(clock, req.Clock) + 1
		go cancel() // races the grant below
		ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: clock, Incarnation: 1})
		if err := <-res; err == nil {
			if err := mu.Unlock(nil); err != nil {
				t.Fatalf("round %d: Unlock after a grant: %v", i, err)
			}
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Lock = %v", i, err)
		}
		cancel()
		waitSent(t, ft, "2", Release, i+1) // an Unlock's may be held back a moment
		if st := mu.State(); st.Held || st.Waiting != 0 || len(ft.sentTo("2", Release)) != i+1 {
			t.Fatalf("round %d: state %+v, %d releases sent, want not held and %d", i, st, len(ft.sentTo("2", Release)), i+1)
		}
		if err := mu.Unlock(nil); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("round %d: a second release: Unlock = %v, want ErrNotHeld", i, err)
		}
	}
}

// Several Mutexes over an in-process network that delivers for different
// peers at once, with goroutines at every peer hammering Lock with short
// random deadlines, TryLock, Unlock, Send and State, and callbacks that
// call Send and State: no two peers ever hold the lock at once, each holder
// has handled every earlier holder's payload, each sender's payloads come
// in order, and at the end every peer can still take the lock (the
// abandoned requests all drained).
func TestHammerSafety(t *testing.T) {
	for _, alg := range []Algorithm{Lamport, RicartAgrawala} {
		t.Run(alg.String(), func(t *testing.T) {
			if n := hammer(t, alg, false); n != 0 {
				t.Errorf("%d entries while another peer held", n)
			}
		})
	}
}

// The hammer's check is checked: over a network that forges the REPLYs to
// each REQUEST and loses the REQUESTs (see forgingEP), peers do enter at
// once, and the hammer sees it.
func TestHammerSeesForgedReplies(t *testing.T) {
	for _, alg := range []Algorithm{Lamport, RicartAgrawala} {
		t.Run(alg.String(), func(t *testing.T) {
			if n := hammer(t, alg, true); n == 0 {
				t.Error("no overlapping entries seen over a network that forges REPLYs")
			}
		})
	}
}

// forgingEP is a broken Transport: it loses every REQUEST and RELEASE it
// is given, and answers each REQUEST with a REPLY it forges from the
// receiver, on the receiver's link back to the sender.
type forgingEP struct{ *boundedEP }

func (e forgingEP) Send(msgs ...Message) error {
	for _, msg := range msgs {
		if err := e.forge(msg); err != nil {
			return err
		}
	}
	return nil
}

func (e forgingEP) forge(msg Message) error {
	switch msg.Kind {
	case Release:
		return nil
	case Request:
		l := e.net.links[[2]string{msg.To, e.id}]
		l.mu.Lock()
		l.q = append(l.q, Message{Kind: Reply, From: msg.To, To: e.id, Clock: msg.Clock + 1, Incarnation: 1})
		l.mu.Unlock()
		l.poke()
		return nil
	}
	return e.boundedEP.Send(msg)
}

// hammer runs the hammer and returns how many entries overlapped another
// peer's. With forge, the network forges REPLYs (see forgingEP): then only
// overlaps are counted, other failures are expected and ignored, and the
// final check that every peer can still lock is skipped.
func hammer(t *testing.T, alg Algorithm, forge bool) int64 {
	ids := []string{"1", "2", "3"}
	n := newBoundedNet(ids, 1<<20)
	errorf := t.Errorf
	if forge {
		errorf = func(string, ...any) {}
	}
	var overlaps atomic.Int64
	mus := map[string]*Mutex{}
	var holders atomic.Int32
	var entries atomic.Uint64
	var seq atomic.Uint64                   // the payload of each release: its global order
	seen := map[string]*atomic.Uint64{}     // per peer: the latest payload it handled
	lastFrom := map[string]*atomic.Uint64{} // per receiver<sender: the latest payload
	for _, id := range ids {
		seen[id] = new(atomic.Uint64)
		for _, from := range ids {
			lastFrom[id+"<"+from] = new(atomic.Uint64)
		}
	}
	for _, id := range ids {
		var mu *Mutex
		var tr Transport = n.eps[id]
		if forge {
			tr = forgingEP{n.eps[id]}
		}
		mu, err := New(Config{ID: id, Peers: ids, Transport: tr, Algorithm: alg,
			Handler: funcHandler{
				release: func(from string, p []byte) error {
					// One sender's payloads come in the order it released.
					v := decodeSeq(p)
					k := id + "<" + from
					if last := lastFrom[k].Load(); v <= last {
						errorf("peer %s: release %d from %s after its %d", id, v, from, last)
					}
					lastFrom[k].Store(v)
					seen[id].Store(max(seen[id].Load(), v))
					_ = mu.State()
					return nil
				},
				message: func(from string, p []byte) error {
					if len(p) > 0 { // answer a greeting, not an answer: no endless echo
						_ = mu.Send(from, nil) // may be ErrPeerBusy; never blocks
					}
					_ = mu.Stats()
					return nil
				},
			},
		})
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
	hold := func(id string) {
		if h := holders.Add(1); h != 1 {
			overlaps.Add(1)
		}
		entries.Add(1)
		// The holder has handled every earlier holder's payload.
		if got, want := seen[id].Load(), seq.Load(); got != want {
			errorf("peer %s entered having handled payloads up to %d, want %d", id, got, want)
		}
		_ = mus[id].State()
		for range 10 { // a critical section long enough to be overlapped
			runtime.Gosched()
		}
		holders.Add(-1)
		v := seq.Add(1)
		seen[id].Store(v)
		if err := mus[id].Unlock(encodeSeq(v)); err != nil {
			errorf("peer %s: Unlock = %v", id, err)
		}
	}
	var wg sync.WaitGroup
	for gi, id := range []string{"1", "1", "2", "2", "3", "3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(gi), 7))
			mu := mus[id]
			for range 150 {
				switch rng.IntN(5) {
				case 0, 1:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(1000))*time.Microsecond)
					_, err := mu.Lock(ctx)
					cancel()
					if err == nil {
						hold(id)
					}
				case 2:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(1000))*time.Microsecond)
					_, err := mu.TryLock(ctx)
					cancel()
					switch {
					case err == nil:
						hold(id)
					case !errors.Is(err, ErrLocked) && !errors.Is(err, context.DeadlineExceeded):
						errorf("peer %s: TryLock = %v", id, err)
					}
				case 3:
					_ = mu.Send(ids[rng.IntN(len(ids))], []byte("hi"))
					_ = mu.State()
				case 4:
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					if _, err := mu.Lock(ctx); err == nil {
						errorf("peer %s: Lock with an ended ctx succeeded", id)
						hold(id)
					}
				}
			}
		}()
	}
	wg.Wait()
	if forge {
		t.Logf("%d entries, %d overlapping", entries.Load(), overlaps.Load())
		return overlaps.Load()
	}
	for _, id := range ids { // no deadline: a peer blocked forever hangs the test
		if _, err := mus[id].Lock(context.Background()); err != nil {
			t.Fatalf("peer %s at the end: Lock = %v", id, err)
		}
		hold(id)
		if err := mus[id].Err(); err != nil {
			t.Fatalf("peer %s stopped: %v", id, err)
		}
	}
	t.Logf("%d entries", entries.Load())
	return overlaps.Load()
}

func encodeSeq(v uint64) []byte { return []byte(strconv.FormatUint(v, 10)) }

func decodeSeq(p []byte) uint64 {
	v, _ := strconv.ParseUint(string(p), 10, 64)
	return v
}

// slowQuarantine is a fakeTransport whose Quarantine of one peer waits for
// the test: it plays a goroutine that is slow between its steps.
type slowQuarantine struct {
	*fakeTransport
	peer    string
	entered chan struct{}
	gate    chan struct{}
}

func (s *slowQuarantine) Quarantine(peer string, inc uint64, cause error) {
	if peer == s.peer {
		close(s.entered)
		<-s.gate
	}
	s.fakeTransport.Quarantine(peer, inc, cause)
}

// Two Quarantine calls at once: the second finds mu held by the first,
// which is applying its own request, and leaves its request for the holder.
// The holder must apply it before it lets go of mu; otherwise it waits for
// the next step, which in a quiet group may never come, and the Transport
// keeps talking to a peer the application refused.
func TestQuarantineRequestLeftWithTheHolderIsApplied(t *testing.T) {
	st := &slowQuarantine{fakeTransport: newFakeTransport("1", 1), peer: "2",
		entered: make(chan struct{}), gate: make(chan struct{})}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: st})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	st.syncWith(t, mu, []string{"2", "3"}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		mu.Quarantine("2", errors.New("bad"))
	}()
	<-st.entered
	mu.Quarantine("3", errors.New("bad too"))
	close(st.gate)
	<-done
	if got := st.quarantines(); !slices.Equal(got, []string{"2#1", "3#1"}) {
		t.Fatalf("after both Quarantine calls returned, the Transport quarantined %v, want [2#1 3#1]", got)
	}
}

// The lazy withdrawal, step by step, under both algorithms: a Lock that
// gives up leaves its request outstanding; the next Lock takes it over (no
// second REQUEST); once granted with no caller it is released at once (the
// peer that waits behind it gets its RELEASE, or its held-back REPLY);
// Close withdraws a request left outstanding.
func TestLazyWithdrawal(t *testing.T) {
	for _, alg := range []Algorithm{Lamport, RicartAgrawala} {
		t.Run(alg.String(), func(t *testing.T) {
			ft := newFakeTransport("1", 1)
			mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft, Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			ft.syncWith(t, mu, []string{"2"}, 1)
			giveUp := func() {
				t.Helper()
				ctx, cancel := context.WithCancel(context.Background())
				res := make(chan error, 1)
				go func() {
					_, err := mu.Lock(ctx)
					res <- err
				}()
				for mu.State().Waiting == 0 {
					runtime.Gosched()
				}
				cancel()
				if err := <-res; !errors.Is(err, context.Canceled) {
					t.Fatalf("Lock = %v, want context.Canceled", err)
				}
			}
			for range 5 {
				giveUp()
			}
			if n := len(ft.sentTo("2", Request)); n != 1 {
				t.Fatalf("%d REQUESTs after five abandoned Locks, want 1", n)
			}
			req := ft.sentTo("2", Request)[0]
			if st := mu.State(); st.Held || st.Waiting != 0 || len(st.Missing) != 1 {
				t.Fatalf("state %+v, want the request outstanding, waiting for 2", st)
			}
			// 2 requests after us; we answer it (Lamport) or hold the
			// answer back (Ricart-Agrawala), then 2 answers ours.
			ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
			ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 2, Incarnation: 1})
			st := mu.State()
			if st.Held || st.Waiting != 0 {
				t.Fatalf("state %+v after the grant with no caller, want released", st)
			}
			switch alg {
			case Lamport:
				if n := len(ft.sentTo("2", Release)); n != 1 {
					t.Fatalf("%d RELEASEs, want 1", n)
				}
			case RicartAgrawala:
				if n := len(ft.sentTo("2", Reply)); n != 1 {
					t.Fatalf("%d REPLYs to 2's request, want 1 (held back, then sent at the release)", n)
				}
			}
			// 2 enters and leaves (Lamport's RELEASE; Ricart-Agrawala needs
			// none), and we are left with nothing outstanding.
			if alg == Lamport {
				ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: req.Clock + 10, Incarnation: 1})
			}
			if st := mu.State(); len(st.Queue) != 0 {
				t.Fatalf("queue %v, want empty", st.Queue)
			}
			// A fresh abandoned Lock, then Close: the request is withdrawn.
			giveUp()
			if n := len(ft.sentTo("2", Request)); n != 2 {
				t.Fatalf("%d REQUESTs, want 2", n)
			}
			if alg == RicartAgrawala { // a later request of 2, which waits for our answer
				req2 := ft.sentTo("2", Request)[1]
				ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: req2.Clock + 1, Incarnation: 1})
			}
			releases, replies := len(ft.sentTo("2", Release)), len(ft.sentTo("2", Reply))
			if err := mu.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			switch alg {
			case Lamport:
				if n := len(ft.sentTo("2", Release)); n != releases+1 {
					t.Fatalf("Close sent %d RELEASEs, want 1", n-releases)
				}
			case RicartAgrawala:
				if n := len(ft.sentTo("2", Reply)); n != replies+1 {
					t.Fatalf("Close sent %d REPLYs to the waiting 2, want 1", n-replies)
				}
			}
		})
	}
}

// Chaos at one Mutex: three peers' streams delivered at once (each in its
// own order, with restarts), while other goroutines Lock, Unlock, TryLock,
// Quarantine and read State, Trace calls Quarantine and Stats, callbacks
// call Unlock, Send, Quarantine and State, and Close comes in the middle.
// Run with -race. Nothing may reach a callback once Close has returned,
// and every Lock call returns.
func TestChaosAtOneMutex(t *testing.T) {
	peers := []string{"1", "2", "3", "4"}
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	var closeReturned atomic.Bool
	var traces atomic.Uint64
	late := func(what string) {
		if closeReturned.Load() {
			t.Errorf("%s after Close returned", what)
		}
	}
	onData := func(from string, p []byte) error {
		late("a callback")
		_ = mu.State()
		_ = mu.Unlock(nil)
		_ = mu.Send(from, []byte("ack"))
		if len(p) > 0 && p[0] == 'q' {
			mu.Quarantine(from, errors.New("the application refused it"))
		}
		if len(p) > 0 && p[0] == 'e' {
			return errors.New("bad")
		}
		return nil
	}
	mu, err := New(Config{ID: "1", Peers: peers, Transport: ft,
		Handler: funcHandler{
			message: onData, release: onData,
			up:   func(string) { late("HandlePeerUp") },
			down: func(string) { late("HandlePeerDown") },
		},
		Trace: func(ev Event) {
			if traces.Add(1)%17 == 0 {
				mu.Quarantine(ev.Message.From, errors.New("trace saw something"))
				_ = mu.Stats()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for pi, p := range peers[1:] {
		wg.Add(1)
		go func() { // p's stream, in order
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(pi), 1))
			clock := uint64(1)
			for inc := uint64(1); ; inc++ {
				ft.feed(Message{Kind: PeerUp, From: p, To: "1", Incarnation: inc})
				ft.feed(Message{Kind: Hello, From: p, To: "1", Clock: clock, Incarnation: 1})
				for range 20 {
					select {
					case <-stop:
						ft.feed(Message{Kind: Data, From: p, To: "1", Payload: []byte("after"), Incarnation: 1})
						ft.feed(Message{Kind: PeerDown, From: p, To: "1"})
						return
					default:
					}
					clock += 2
					switch rng.IntN(6) {
					case 0:
						ft.feed(Message{Kind: Request, From: p, To: "1", Clock: clock, Incarnation: 1})
						ft.feed(Message{Kind: Release, From: p, To: "1", Clock: clock + 1, Payload: []byte("r"), Incarnation: 1})
					case 1:
						ft.feed(Message{Kind: Reply, From: p, To: "1", Clock: clock, Incarnation: 1})
					case 2:
						ft.feed(Message{Kind: Data, From: p, To: "1", Payload: []byte("q"), Incarnation: 1})
					case 3:
						ft.feed(Message{Kind: Data, From: p, To: "1", Payload: []byte("e"), Incarnation: 1})
					case 4:
						ft.feed(Message{Kind: PeerDown, From: p, To: "1"})
					default:
						ft.feed(Message{Kind: Data, From: p, To: "1", Payload: []byte("d"), Incarnation: 1})
					}
				}
			}
		}()
	}
	var callers sync.WaitGroup
	for gi := range 3 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			rng := rand.New(rand.NewPCG(uint64(gi), 2))
			for range 200 {
				switch rng.IntN(4) {
				case 0:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
					if _, err := mu.Lock(ctx); err == nil {
						_ = mu.Unlock([]byte("u"))
					}
					cancel()
				case 1:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
					if _, err := mu.TryLock(ctx); err == nil {
						_ = mu.Unlock(nil)
					}
					cancel()
				case 2:
					mu.Quarantine(peers[1+rng.IntN(3)], errors.New("checked and refused"))
				default:
					_ = mu.State()
					_ = mu.Err()
				}
			}
		}()
	}
	callers.Wait()
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closeReturned.Store(true)
	close(stop)
	wg.Wait()
	if _, err := mu.Lock(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock after Close = %v", err)
	}
	t.Logf("stats %+v", mu.Stats())
}

// slowFlush is a fakeTransport whose Flush waits for its ctx: a network
// that does not acknowledge.
type slowFlush struct {
	*fakeTransport
	entered chan struct{}
}

func (s *slowFlush) Flush(ctx context.Context) error {
	close(s.entered)
	<-ctx.Done()
	return ctx.Err()
}

// Close waits for the network (Flush) without holding the Mutex's lock:
// meanwhile State, Stats, Err, Quarantine, Unlock and delivery go on at
// once, and Close reports that what was sent is not delivered.
func TestCloseFlushesOutsideTheLock(t *testing.T) {
	sf := &slowFlush{fakeTransport: newFakeTransport("1", 1), entered: make(chan struct{})}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: sf,
		Handler: funcHandler{message: func(string, []byte) error { t.Error("a message reached HandleMessage during Close"); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	sf.syncWith(t, mu, []string{"2"}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan error, 1)
	go func() { closed <- mu.Close(ctx) }()
	<-sf.entered
	_ = mu.State()
	_ = mu.Stats()
	if err := mu.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err during Close = %v", err)
	}
	mu.Quarantine("2", errors.New("x"))
	if err := mu.Unlock(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Unlock during Close = %v", err)
	}
	sf.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("x"), Incarnation: 1})
	cancel()
	if err := <-closed; !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
}

// Close waits for a running callback also when the Mutex has already
// stopped by itself (the Transport refused a message) or another Close is
// under way: the application closes the Transport and tears down what its
// callbacks use once Close returns.
func TestCloseAfterAStopWaitsForARunningCallback(t *testing.T) {
	for _, how := range []string{"failed", "closing"} {
		t.Run(how, func(t *testing.T) {
			ft := newFakeTransport("1", 1)
			var refuse atomic.Bool
			ft.send = func(Message) error {
				if refuse.Load() {
					return errors.New("the transport broke")
				}
				return nil
			}
			inCallback, proceed := make(chan struct{}), make(chan struct{})
			var returned atomic.Bool
			mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft,
				Handler: funcHandler{message: func(string, []byte) error {
					close(inCallback)
					<-proceed
					returned.Store(true)
					return nil
				}}})
			if err != nil {
				t.Fatal(err)
			}
			ft.syncWith(t, mu, []string{"2"}, 1)
			fed := make(chan struct{})
			go func() {
				defer close(fed)
				ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("a"), Incarnation: 1})
			}()
			<-inCallback
			first := make(chan error, 1)
			switch how {
			case "failed":
				refuse.Store(true)
				if _, err := mu.Lock(context.Background()); !errors.Is(err, ErrTransport) {
					t.Fatalf("Lock over a broken transport = %v", err)
				}
			case "closing":
				go func() { first <- mu.Close(context.Background()) }()
				for !blockedIn("lamportmutex.(*Mutex).Close(") {
					runtime.Gosched()
				}
			}
			closed := make(chan bool, 1)
			go func() {
				_ = mu.Close(context.Background())
				closed <- returned.Load()
			}()
			for waiting := false; !waiting; {
				select {
				case ok := <-closed:
					if !ok {
						t.Fatal("Close returned while a callback was running")
					}
				default:
				}
				waiting = blockedIn("lamportmutex.(*Mutex).Close(") && (how != "closing" || countBlockedIn("lamportmutex.(*Mutex).Close(") == 2)
				runtime.Gosched()
			}
			close(proceed)
			if !<-closed {
				t.Error("Close returned while a callback was running")
			}
			<-fed
			if how == "closing" {
				if err := <-first; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// blockedIn reports whether a goroutine waits for a sync.Mutex in fn.
func blockedIn(fn string) bool { return countBlockedIn(fn) > 0 }

func countBlockedIn(fn string) int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if i := strings.Index(g, "sync.(*Mutex).Lock"); i >= 0 && strings.Contains(g[i:], fn) {
			count++
		}
	}
	return count
}

// Trace may call Quarantine and Stats: the request takes effect when the
// step that traced ends, before the next step, so the Transport hears of it
// before the step's deliver returns and the sender's next message is
// ignored.
func TestQuarantineFromTrace(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	var released []string
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
		Handler: funcHandler{release: func(from string, p []byte) error { released = append(released, from+":"+string(p)); return nil }},
		Trace: func(ev Event) {
			if !ev.Sent && ev.Message.Kind == Request && ev.Message.From == "2" {
				_ = mu.Stats()
				mu.Quarantine("2", errors.New("the trace checker refused it"))
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 1)
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 10, Incarnation: 1})
	if got := ft.quarantines(); !slices.Equal(got, []string{"2#1"}) {
		t.Fatalf("after the traced step: quarantined %v, want [2#1]", got)
	}
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 11, Payload: []byte("x"), Incarnation: 1})
	ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: 12, Incarnation: 1})
	ft.feed(Message{Kind: Release, From: "3", To: "1", Clock: 13, Payload: []byte("y"), Incarnation: 1})
	if !slices.Equal(released, []string{"3:y"}) {
		t.Fatalf("HandleRelease saw %q, want only 3's", released)
	}
}

// A callback may call Unlock, Send, State and Quarantine: with the lock
// held, HandleMessage releases it (its payload goes with the RELEASE), sends,
// reads the state and quarantines another peer.
func TestCallbackCallsTheMutex(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	var inCb struct {
		unlock, send error
		st           State
	}
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
		Handler: funcHandler{message: func(from string, p []byte) error {
			inCb.unlock = mu.Unlock([]byte("from the callback"))
			inCb.send = mu.Send(from, []byte("done"))
			inCb.st = mu.State()
			mu.Quarantine("3", errors.New("2 says 3 lies"))
			return nil
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 1)
	locked := make(chan error, 1)
	go func() { _, err := mu.Lock(context.Background()); locked <- err }()
	waitSent(t, ft, "2", Request, 1)
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	ft.feed(Message{Kind: Reply, From: "3", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("please release"), Incarnation: 1})
	if inCb.unlock != nil || inCb.send != nil || inCb.st.Held {
		t.Fatalf("in the callback: Unlock %v, Send %v, state %+v", inCb.unlock, inCb.send, inCb.st)
	}
	rel := ft.sentTo("2", Release)
	if len(rel) != 1 || string(rel[0].Payload) != "from the callback" {
		t.Fatalf("RELEASEs to 2: %v", rel)
	}
	if got := ft.quarantines(); !slices.Equal(got, []string{"3#1"}) {
		t.Fatalf("quarantined %v, want [3#1]", got)
	}
}

// HandleRelease runs before the release takes effect, under both algorithms:
// while it runs the releasing peer's request still stands (Lamport: in the
// queue) and the local Lock waiting behind it is not granted; it is
// granted once HandleRelease returned and the release (and, under
// Ricart-Agrawala, the REPLY behind it) was handled.
func TestHandleReleaseRunsBeforeTheReleaseTakesEffect(t *testing.T) {
	for _, alg := range []Algorithm{Lamport, RicartAgrawala} {
		t.Run(alg.String(), func(t *testing.T) {
			ft := newFakeTransport("1", 1)
			var mu *Mutex
			var during State
			var handled atomic.Bool
			mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft, Algorithm: alg,
				Handler: funcHandler{release: func(from string, p []byte) error {
					during = mu.State()
					handled.Store(true)
					return nil
				}}})
			if err != nil {
				t.Fatal(err)
			}
			defer mu.Close(context.Background())
			ft.syncWith(t, mu, []string{"2"}, 1)
			// 2 requests first, and we answer.
			ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 5, Incarnation: 1})
			locked := make(chan bool, 1)
			go func() {
				_, err := mu.Lock(context.Background())
				if err != nil {
					t.Error(err)
				}
				locked <- handled.Load()
			}()
			waitSent(t, ft, "2", Request, 1)
			req := ft.sentTo("2", Request)[0]
			if alg == Lamport { // 2's REPLY to ours; 2 is still first
				ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
			}
			ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: req.Clock + 2, Payload: []byte("block"), Incarnation: 1})
			if !handled.Load() {
				t.Fatal("HandleRelease not called")
			}
			if during.Held || (alg == Lamport && (len(during.Queue) != 2 || during.Queue[0].ID != "2")) {
				t.Fatalf("in HandleRelease the release had taken effect: %+v", during)
			}
			if alg == RicartAgrawala { // the held-back REPLY follows the RELEASE
				ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 3, Incarnation: 1})
			}
			if !<-locked {
				t.Fatal("granted before HandleRelease ran")
			}
			if err := mu.Unlock(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TryLock that learns of an earlier request of another peer, which
// crossed its own, returns ErrLocked and withdraws at once (a RELEASE),
// unless a Lock call queued behind it, which keeps the request and is
// granted once that peer releases.
func TestTryLockWithdrawsAtOnce(t *testing.T) {
	for _, behind := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "lock behind"}[behind], func(t *testing.T) {
			mu, ft := newPairMutex(t)
			tried := make(chan error, 1)
			go func() { _, err := mu.TryLock(context.Background()); tried <- err }()
			waitSent(t, ft, "2", Request, 1)
			req := ft.sentTo("2", Request)[0]
			ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: req.Clock - 1, Incarnation: 1}) // sent before ours arrived
			locked := make(chan error, 1)
			if behind {
				go func() { _, err := mu.Lock(context.Background()); locked <- err }()
				for mu.State().Waiting < 2 {
					runtime.Gosched()
				}
			}
			ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
			if err := <-tried; !errors.Is(err, ErrLocked) {
				t.Fatalf("TryLock = %v, want ErrLocked", err)
			}
			rel := len(ft.sentTo("2", Release))
			if !behind {
				if rel != 1 || len(mu.State().Queue) != 1 {
					t.Fatalf("after ErrLocked: %d RELEASEs, queue %v; want the request withdrawn", rel, mu.State().Queue)
				}
				return
			}
			if rel != 0 {
				t.Fatal("the request was withdrawn under a waiting Lock")
			}
			ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: req.Clock + 2, Incarnation: 1})
			if err := <-locked; err != nil {
				t.Fatal(err)
			}
			if err := mu.Unlock(nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A restart of 3 comes while 2's callback runs, and that callback
// quarantines 3 (now naming the new incarnation): the application still
// hears HandlePeerUp for it, so it forgets the earlier incarnation, and the
// Transport quarantines the new one.
func TestQuarantineFromACallbackStillReportsAWaitingPeerUp(t *testing.T) {
	ft := newFakeTransport("1", 1)
	var mu *Mutex
	inCallback, proceed := make(chan struct{}), make(chan struct{})
	var ups []string
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
		Handler: funcHandler{
			message: func(from string, p []byte) error {
				close(inCallback)
				<-proceed
				mu.Quarantine("3", errors.New("2 showed that 3 lies"))
				return nil
			},
			up: func(p string) { ups = append(ups, p) },
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer mu.Close(context.Background())
	ft.syncWith(t, mu, []string{"2", "3"}, 1)
	ups = nil
	done2, done3 := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done2)
		ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("evidence"), Incarnation: 1})
	}()
	<-inCallback
	go func() {
		defer close(done3)
		ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: 2})
	}()
	waitInCallbackLock(t)
	close(proceed)
	<-done2
	<-done3
	if !slices.Equal(ups, []string{"3"}) {
		t.Errorf("HandlePeerUp calls %v, want [3]", ups)
	}
	if got := ft.quarantines(); !slices.Equal(got, []string{"3#2"}) {
		t.Errorf("quarantined %v, want [3#2]", got)
	}
}

// TryLock with another peer's request already queued here returns
// ErrLocked at once and sends nothing: that request was stamped before any
// this peer could make now. Once the peer releases, TryLock takes the lock.
func TestTryLockFailsAtOnceBehindAQueuedRequest(t *testing.T) {
	mu, ft := newPairMutex(t)
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 5, Incarnation: 1})
	if _, err := mu.TryLock(context.Background()); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock = %v, want ErrLocked", err)
	}
	if n := len(ft.sentTo("2", Request)) + len(ft.sentTo("2", Release)); n != 0 {
		t.Fatalf("TryLock behind a queued request sent %d REQUESTs and RELEASEs, want none", n)
	}
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 6, Incarnation: 1})
	tried := make(chan error, 1)
	go func() { _, err := mu.TryLock(context.Background()); tried <- err }()
	waitSent(t, ft, "2", Request, 1)
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if err := <-tried; err != nil {
		t.Fatalf("TryLock after the release: %v", err)
	}
	if err := mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
}
