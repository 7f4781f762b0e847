package lamportmutex_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i + 1)
	}
	return out
}

// group is n Mutexes over one in-process network.
type group struct {
	t   testing.TB
	ids []string
	net *transport.ChanNetwork
	mus map[string]*lamportmutex.Mutex
}

// newGroup starts n peers; onRelease, if set, is given each peer's id.
func newGroup(t *testing.T, n int, onRelease func(self, from string, payload []byte) error, algo ...lamportmutex.Algorithm) *group {
	return newGroupTB(t, n, append(algo, lamportmutex.Lamport)[0], onRelease)
}

// newGroupTB starts n peers running algo, for tests and benchmarks.
func newGroupTB(t testing.TB, n int, algo lamportmutex.Algorithm, onRelease ...func(self, from string, payload []byte) error) *group {
	t.Helper()
	g := &group{t: t, ids: ids(n), mus: map[string]*lamportmutex.Mutex{}}
	net, err := transport.NewChanNetwork(g.ids, transport.ChanOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.net = net
	for _, id := range g.ids {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		cfg := lamportmutex.Config{ID: id, Peers: g.ids, Transport: ep, Algorithm: algo}
		if len(onRelease) > 0 && onRelease[0] != nil {
			cfg.Handler = releaseHandler{self: id, f: onRelease[0]}
		}
		mu, err := lamportmutex.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		g.mus[id] = mu
	}
	t.Cleanup(g.close)
	return g
}

// releaseHandler hands the release payloads that peer self receives to f.
type releaseHandler struct {
	lamportmutex.NopHandler
	self string
	f    func(self, from string, payload []byte) error
}

func (h releaseHandler) HandleRelease(from string, payload []byte) error {
	return h.f(h.self, from, payload)
}

func (g *group) close() {
	for _, mu := range g.mus {
		_ = mu.Close(context.Background())
	}
	g.net.Close(context.Background())
}

// waitFor polls cond until it holds. It has no time bound of its own: the
// test binary's -timeout is the bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i%10000 == 9999 {
			t.Logf("still waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// queued reports whether peer at's queue holds a request of peer of.
func queued(g *group, at, of string) bool {
	st, err := g.mus[at].State(), error(nil)
	if err != nil {
		return false
	}
	for _, tok := range st.Queue {
		if tok.ID == of {
			return true
		}
	}
	return false
}

// section is a critical section that detects overlap and checks that
// fencing tokens increase.
type section struct {
	inside  atomic.Int32
	mu      sync.Mutex
	last    lamportmutex.Token
	entries int
}

func (s *section) enter(t *testing.T, id string, tok lamportmutex.Token) {
	if !s.inside.CompareAndSwap(0, 1) {
		t.Errorf("peer %s entered while another peer was inside", id)
		return
	}
	s.mu.Lock()
	if s.entries > 0 && !s.last.Less(tok) {
		t.Errorf("peer %s granted %v after %v: tokens must increase", id, tok, s.last)
	}
	if tok.ID != id {
		t.Errorf("peer %s got token of %s", id, tok.ID)
	}
	s.last = tok
	s.entries++
	s.mu.Unlock()
	runtimeYield()
	s.inside.Store(0)
}

func runtimeYield() { time.Sleep(0) }

var algorithms = []lamportmutex.Algorithm{lamportmutex.Lamport, lamportmutex.RicartAgrawala}

func TestMutexExclusion(t *testing.T) {
	for _, tc := range []struct {
		peers, goroutines, loops int
		algo                     lamportmutex.Algorithm
	}{
		{1, 4, 50, lamportmutex.Lamport}, {3, 4, 40, lamportmutex.Lamport}, {8, 3, 10, lamportmutex.Lamport},
		{3, 4, 40, lamportmutex.RicartAgrawala}, {8, 3, 10, lamportmutex.RicartAgrawala},
	} {
		t.Run(fmt.Sprintf("%v/peers=%d", tc.algo, tc.peers), func(t *testing.T) {
			g := newGroup(t, tc.peers, nil, tc.algo)
			var s section
			var wg sync.WaitGroup
			for _, id := range g.ids {
				for range tc.goroutines {
					wg.Add(1)
					go func() {
						defer wg.Done()
						mu := g.mus[id]
						for range tc.loops {
							tok, err := mu.Lock(context.Background())
							if err != nil {
								t.Error(err)
								return
							}
							s.enter(t, id, tok)
							if err := mu.Unlock(nil); err != nil {
								t.Error(err)
								return
							}
						}
					}()
				}
			}
			wg.Wait()
			want := tc.peers * tc.goroutines * tc.loops
			if s.entries != want {
				t.Fatalf("entries = %d, want %d", s.entries, want)
			}
			// Lamport's cost: N-1 REQUESTs, N-1 REPLYs and N-1 RELEASEs per
			// entry, plus one HELLO per ordered pair at first contact.
			// Ricart-Agrawala sends no RELEASE without a payload.
			// A peer may enter on a later message from another before that
			// one has seen its REQUEST, so a REPLY can still be owed after
			// the last Lock returned: wait for it. Close then hands over
			// what is still queued, so count after it.
			waitFor(t, "every REQUEST answered", func() bool {
				var req, rep uint64
				for _, mu := range g.mus {
					st := mu.Stats()
					req += st.Sent[lamportmutex.Request]
					rep += st.Sent[lamportmutex.Reply]
				}
				return req == rep
			})
			for _, mu := range g.mus {
				if err := mu.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			n := uint64(tc.peers - 1)
			var entries, req, rel, rep, hello uint64
			for _, mu := range g.mus {
				st := mu.Stats()
				entries += st.Entries
				req += st.Sent[lamportmutex.Request]
				rel += st.Sent[lamportmutex.Release]
				rep += st.Sent[lamportmutex.Reply]
				hello += st.Sent[lamportmutex.Hello]
			}
			wantRel := n * entries
			if tc.algo == lamportmutex.RicartAgrawala {
				wantRel = 0
			}
			if entries != uint64(want) || req != n*entries || rel != wantRel || rep != n*entries || hello != n*uint64(tc.peers) {
				t.Fatalf("entries=%d requests=%d releases=%d replies=%d hellos=%d; want %d, %d, %d, %d, %d",
					entries, req, rel, rep, hello, want, n*entries, wantRel, n*entries, n*uint64(tc.peers))
			}
		})
	}
}

// TestReleasePayloadHandledBeforeNextEntry checks update-before-release:
// whoever enters has handled the payload of every earlier entry. (Peers
// that are not entering may handle payloads of different senders out of
// global order: only per-sender order is promised.)
func TestReleasePayloadHandledBeforeNextEntry(t *testing.T) {
	for _, algo := range algorithms {
		t.Run(algo.String(), func(t *testing.T) { testReleasePayload(t, algo) })
	}
}

func testReleasePayload(t *testing.T, algo lamportmutex.Algorithm) {
	const peers, loops = 4, 30
	var mu sync.Mutex
	handled := map[string]map[int]bool{} // per peer: entries whose payload it handled, or made
	last := map[string]map[string]int{}  // per peer and sender: last entry handled
	for _, id := range ids(peers) {
		handled[id] = map[int]bool{}
		last[id] = map[string]int{}
	}
	g := newGroup(t, peers, func(self, from string, p []byte) error {
		n, err := strconv.Atoi(string(p))
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if handled[self][n] {
			t.Errorf("peer %s: payload %d handled twice", self, n)
		}
		if n <= last[self][from] {
			t.Errorf("peer %s: payload %d from %s after %d: not in sender order", self, n, from, last[self][from])
		}
		handled[self][n] = true
		last[self][from] = n
		return nil
	}, algo)
	var global int // entry counter, touched only inside the lock
	var wg sync.WaitGroup
	for _, id := range g.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range loops {
				if _, err := g.mus[id].Lock(context.Background()); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k := 1; k <= global; k++ {
					if !handled[id][k] {
						t.Errorf("peer %s entered after entry %d without handling entry %d", id, global, k)
					}
				}
				global++
				n := global
				handled[id][n] = true
				mu.Unlock()
				if err := g.mus[id].Unlock([]byte(strconv.Itoa(n))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if global != peers*loops {
		t.Fatalf("entries = %d, want %d", global, peers*loops)
	}
}

// A Lock that gives up leaves its request to be released as soon as it is
// granted: the peers do not wait on it for longer than that.
func TestLockCancelReleasesOnceGranted(t *testing.T) {
	g := newGroup(t, 3, nil)
	ctx := context.Background()
	if _, err := g.mus["1"].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := g.mus["2"].Lock(cctx)
		errc <- err
	}()
	waitFor(t, "2's request at 3", func() bool { return queued(g, "3", "2") })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock = %v, want context.Canceled", err)
	}
	if err := g.mus["1"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2's request released at 3", func() bool { return !queued(g, "3", "2") })
	// 3 must not wait on 2's abandoned request.
	if _, err := g.mus["3"].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.mus["3"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
	if err := g.mus["2"].Unlock(nil); !errors.Is(err, lamportmutex.ErrNotHeld) {
		t.Fatalf("Unlock after cancelled Lock = %v, want ErrNotHeld", err)
	}
}

// TestLockCancelRace cancels Locks at random moments, so that some grants
// race their cancellation; afterwards the lock must still be free for all.
func TestLockCancelRace(t *testing.T) {
	for _, algo := range algorithms {
		t.Run(algo.String(), func(t *testing.T) { testLockCancelRace(t, algo) })
	}
}

func testLockCancelRace(t *testing.T, algo lamportmutex.Algorithm) {
	g := newGroup(t, 3, nil, algo)
	var s section
	var wg sync.WaitGroup
	var granted, cancelled atomic.Int64
	for i, id := range g.ids {
		for k := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), uint64(k)))
				for range 60 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.IntN(300))*time.Microsecond)
					tok, err := g.mus[id].Lock(ctx)
					cancel()
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Error(err)
							return
						}
						cancelled.Add(1)
						continue
					}
					granted.Add(1)
					s.enter(t, id, tok)
					if err := g.mus[id].Unlock(nil); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("granted %d, cancelled %d", granted.Load(), cancelled.Load())
	for _, id := range g.ids {
		if _, err := g.mus[id].Lock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := g.mus[id].Unlock(nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range g.ids {
		st, err := g.mus[id].State(), error(nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Held || st.Waiting != 0 || len(st.Queue) != 0 {
			waitFor(t, "quiet queues", func() bool {
				st = g.mus[id].State()
				return !st.Held && st.Waiting == 0 && len(st.Queue) == 0
			})
		}
	}
}

func TestTryLock(t *testing.T) {
	g := newGroup(t, 3, nil)
	ctx := context.Background()
	tok, err := g.mus["1"].TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock on a free lock: %v", err)
	}
	if _, err := g.mus["1"].TryLock(ctx); !errors.Is(err, lamportmutex.ErrLocked) {
		t.Fatalf("TryLock while this process holds = %v, want ErrLocked", err)
	}
	if _, err := g.mus["2"].TryLock(ctx); !errors.Is(err, lamportmutex.ErrLocked) {
		t.Fatalf("TryLock while peer 1 holds = %v, want ErrLocked", err)
	}
	waitFor(t, "2's failed TryLock withdrawn at 3", func() bool { return !queued(g, "3", "2") })
	if err := g.mus["1"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
	// Until 1's RELEASE reaches 2, 2 has 1's request queued, and its TryLock
	// fails at once.
	waitFor(t, "1's release at 2", func() bool { return !queued(g, "2", "1") })
	tok2, err := g.mus["2"].TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	if !tok.Less(tok2) {
		t.Fatalf("token %v after %v", tok2, tok)
	}
	if err := g.mus["2"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWhileWaiting(t *testing.T) {
	g := newGroup(t, 3, nil)
	ctx := context.Background()
	if _, err := g.mus["1"].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := g.mus["2"].Lock(ctx)
			errc <- err
		}()
	}
	waitFor(t, "2's request at 1", func() bool { return queued(g, "1", "2") })
	if err := g.mus["2"].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; !errors.Is(err, lamportmutex.ErrClosed) {
			t.Fatalf("Lock during Close = %v, want ErrClosed", err)
		}
	}
	// Close withdrew 2's request everywhere. (Nobody can take the lock
	// while 2 is down: Lamport's algorithm needs every peer's reply.)
	for _, at := range []string{"1", "3"} {
		waitFor(t, "2's request withdrawn", func() bool { return !queued(g, at, "2") })
	}
	if err := g.mus["1"].Unlock(nil); err != nil {
		t.Fatal(err)
	}
	m2 := g.mus["2"]
	if _, err := m2.Lock(ctx); !errors.Is(err, lamportmutex.ErrClosed) {
		t.Fatalf("Lock after Close = %v", err)
	}
	if err := m2.Unlock(nil); !errors.Is(err, lamportmutex.ErrClosed) {
		t.Fatalf("Unlock after Close = %v", err)
	}
	if err := m2.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

func TestUnlockNotHeld(t *testing.T) {
	g := newGroup(t, 2, nil)
	if err := g.mus["1"].Unlock(nil); !errors.Is(err, lamportmutex.ErrNotHeld) {
		t.Fatalf("Unlock = %v, want ErrNotHeld", err)
	}
	if err := g.mus["1"].Unlock([]byte("x")); !errors.Is(err, lamportmutex.ErrNotHeld) {
		t.Fatalf("Unlock with payload = %v, want ErrNotHeld", err)
	}
}

func TestConfigErrors(t *testing.T) {
	net, err := transport.NewChanNetwork([]string{"a", "b"}, transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close(context.Background())
	ep, err := net.Endpoint("a")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]lamportmutex.Config{
		"empty id":     {ID: "", Peers: []string{"a", "b"}, Transport: ep},
		"missing self": {ID: "a", Peers: []string{"b", "c"}, Transport: ep},
		"duplicate":    {ID: "a", Peers: []string{"a", "b", "b"}, Transport: ep},
		"empty peer":   {ID: "a", Peers: []string{"a", ""}, Transport: ep},
		"no transport": {ID: "a", Peers: []string{"a", "b"}},
		"wrong id":     {ID: "b", Peers: []string{"a", "b"}, Transport: ep},
	} {
		if _, err := lamportmutex.New(cfg); !errors.Is(err, lamportmutex.ErrConfig) {
			t.Errorf("%s: New = %v, want ErrConfig", name, err)
		}
	}
}

func TestNonMemberDropped(t *testing.T) {
	net, err := transport.NewChanNetwork([]string{"1", "2", "x"}, transport.ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close(context.Background())
	var mus []*lamportmutex.Mutex
	for _, id := range []string{"1", "2"} {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		mu, err := lamportmutex.New(lamportmutex.Config{ID: id, Peers: []string{"1", "2"}, Transport: ep})
		if err != nil {
			t.Fatal(err)
		}
		defer mu.Close(context.Background())
		mus = append(mus, mu)
	}
	x, err := net.Endpoint("x")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A forged grant attempt: x pretends to release and to reply.
	for _, k := range []lamportmutex.Kind{lamportmutex.Request, lamportmutex.Release} {
		if err := x.Send(lamportmutex.Message{Kind: k, From: "x", To: "1", Clock: 99}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "x's messages dropped", func() bool { return mus[0].Stats().Dropped >= 3 }) // + PeerUp(x)
	if _, err := mus[0].Lock(ctx); err != nil {
		t.Fatal(err)
	}
	st := mus[0].State()
	for _, tok := range st.Queue {
		if tok.ID == "x" {
			t.Fatalf("non-member queued: %v", st.Queue)
		}
	}
}
