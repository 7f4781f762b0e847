package transport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

// mutexPeer is one peer of a Mutex group over TCP.
type mutexPeer struct {
	tcp *transport.TCP
	mu  *lamportmutex.Mutex
}

func (p *mutexPeer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.mu.Close(ctx)
	_ = p.tcp.Close(ctx)
}

func startMutexPeer(t *testing.T, id string, ids []string, addrs map[string]string, ln net.Listener, tweak ...func(*transport.TCPConfig)) *mutexPeer {
	t.Helper()
	cfg := transport.TCPConfig{ID: id, Listener: ln, ListenAddr: addrs[id], Peers: addrs, Cluster: "mutex-test"}
	for _, f := range tweak {
		f(&cfg)
	}
	tcp, err := transport.NewTCP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu, err := lamportmutex.New(lamportmutex.Config{ID: id, Peers: ids, Transport: tcp})
	if err != nil {
		t.Fatal(err)
	}
	return &mutexPeer{tcp: tcp, mu: mu}
}

func startMutexGroup(t *testing.T, ids []string, tweak ...func(*transport.TCPConfig)) (map[string]*mutexPeer, map[string]string) {
	t.Helper()
	addrs := map[string]string{}
	lns := map[string]net.Listener{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id], addrs[id] = ln, ln.Addr().String()
	}
	peers := map[string]*mutexPeer{}
	for _, id := range ids {
		peers[id] = startMutexPeer(t, id, ids, addrs, lns[id], tweak...)
	}
	return peers, addrs
}

// TestMutexOverTCP runs the Mutex on real sockets with several goroutines
// per peer; a compare-and-swap in the critical section catches overlap.
func TestMutexOverTCP(t *testing.T) {
	ids := []string{"a", "b", "c"}
	peers, _ := startMutexGroup(t, ids)
	var inside atomic.Int32
	var entries atomic.Int64
	var wg sync.WaitGroup
	var lastMu sync.Mutex
	var last lamportmutex.Token
	for _, id := range ids {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					tok, err := peers[id].mu.Lock(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					if !inside.CompareAndSwap(0, 1) {
						t.Errorf("%s entered while another peer was inside", id)
					}
					lastMu.Lock()
					if entries.Load() > 0 && !last.Less(tok) {
						t.Errorf("token %v granted after %v", tok, last)
					}
					last = tok
					lastMu.Unlock()
					entries.Add(1)
					inside.Store(0)
					if err := peers[id].mu.Unlock([]byte("x")); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if got := entries.Load(); got != 3*3*25 {
		t.Fatalf("entries = %d, want %d", got, 3*3*25)
	}
	for _, p := range peers {
		p.close()
	}
}

// TestMutexWaiterSurvivesPeerRestart: a peer goes down and comes back as a
// new incarnation while another waits for the lock; the waiter gets it.
func TestMutexWaiterSurvivesPeerRestart(t *testing.T) {
	ids := []string{"a", "b", "c"}
	peers, addrs := startMutexGroup(t, ids)
	defer func() {
		for _, p := range peers {
			p.close()
		}
	}()
	ctx := context.Background()
	// Warm up: every pair has spoken.
	for _, id := range ids {
		if _, err := peers[id].mu.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := peers[id].mu.Unlock(nil); err != nil {
			t.Fatal(err)
		}
	}
	// c's last RELEASE must reach a and b before c goes, or a's next
	// request could legitimately be granted on c's last (later) message.
	for _, id := range []string{"a", "b"} {
		waitUntil(t, func() bool {
			return len(peers[id].mu.State().Queue) == 0
		})
	}
	peers["c"].close()

	got := make(chan error, 1)
	go func() {
		_, err := peers["a"].mu.Lock(ctx)
		got <- err
	}()
	// a's request is out and waits for c.
	waitUntil(t, func() bool {
		st := peers["a"].mu.State()
		return len(st.Missing) == 1 && st.Missing[0] == "c"
	})

	ln, err := net.Listen("tcp", addrs["c"])
	if err != nil {
		t.Fatal(err)
	}
	peers["c"] = startMutexPeer(t, "c", ids, addrs, ln)
	if err := <-got; err != nil {
		t.Fatalf("waiter after restart: %v", err)
	}
	restarted := false
	for _, s := range peers["a"].tcp.Status() {
		restarted = restarted || (s.ID == "c" && s.Restarts >= 1)
	}
	if !restarted {
		t.Fatalf("restart of c not visible in a's status: %+v", peers["a"].tcp.Status())
	}
	if err := peers["a"].mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	// The new incarnation can take the lock too.
	if _, err := peers["c"].mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := peers["c"].mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond; the test binary's -timeout bounds it.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 1; !cond(); i++ {
		if i%2000 == 0 {
			t.Logf("still waiting (%d polls)", i)
		}
		time.Sleep(time.Millisecond)
	}
}

// A payload that would not fit in a frame is refused by Unlock while the
// lock is still held, and the largest one that fits goes through.
func TestMutexOverTCPPayloadLimit(t *testing.T) {
	ids := []string{"a", "b"}
	peers, _ := startMutexGroup(t, ids, func(c *transport.TCPConfig) { c.MaxFrameSize = 4096 })
	for _, p := range peers {
		defer p.close()
	}
	ctx := context.Background()
	limit := peers["a"].tcp.MaxPayload()
	if _, err := peers["a"].mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := peers["a"].mu.Unlock(make([]byte, limit+1)); !errors.Is(err, lamportmutex.ErrPayloadTooLarge) {
		t.Fatalf("Unlock(%d bytes) = %v, want ErrPayloadTooLarge", limit+1, err)
	}
	if err := peers["a"].mu.Unlock(make([]byte, limit)); err != nil {
		t.Fatalf("Unlock(%d bytes): %v", limit, err)
	}
	// b can take the lock: the release arrived.
	if _, err := peers["b"].mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := peers["b"].mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	if n := peers["a"].mu.Stats().SendErrors; n != 0 {
		t.Fatalf("SendErrors = %d", n)
	}
}

// BenchmarkMutexOverTCP compares the algorithms on loopback sockets, three
// peers: one locking with the others idle, and all three looping.
func BenchmarkMutexOverTCP(b *testing.B) {
	for _, algo := range []lamportmutex.Algorithm{lamportmutex.Lamport, lamportmutex.RicartAgrawala} {
		for _, contended := range []bool{false, true} {
			name := fmt.Sprintf("%v/uncontended", algo)
			if contended {
				name = fmt.Sprintf("%v/contended", algo)
			}
			b.Run(name, func(b *testing.B) {
				ids := []string{"a", "b", "c"}
				addrs := map[string]string{}
				var trs []*transport.TCP
				var lns []net.Listener
				for _, id := range ids {
					ln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						b.Fatal(err)
					}
					lns = append(lns, ln)
					addrs[id] = ln.Addr().String()
				}
				var mus []*lamportmutex.Mutex
				for i, id := range ids {
					tr, err := transport.NewTCP(transport.TCPConfig{ID: id, Listener: lns[i], Peers: addrs})
					if err != nil {
						b.Fatal(err)
					}
					trs = append(trs, tr)
					mu, err := lamportmutex.New(lamportmutex.Config{ID: id, Peers: ids, Transport: tr, Algorithm: algo})
					if err != nil {
						b.Fatal(err)
					}
					mus = append(mus, mu)
				}
				ctx := context.Background()
				defer func() {
					for i := range mus {
						_ = mus[i].Close(ctx)
						_ = trs[i].Close(ctx)
					}
				}()
				lockers := mus[:1]
				if contended {
					lockers = mus
				}
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/len(lockers) + 1
				for _, mu := range lockers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if _, err := mu.Lock(ctx); err != nil {
								b.Error(err)
								return
							}
							if err := mu.Unlock(nil); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

// Closing the Mutex flushes: the RELEASE a closing Mutex sends reaches the
// peers, whose queues then no longer hold its request.
func TestMutexOverTCPCloseFlushes(t *testing.T) {
	ids := []string{"a", "b", "c"}
	peers, _ := startMutexGroup(t, ids)
	defer func() {
		for _, id := range []string{"a", "b"} {
			peers[id].close()
		}
	}()
	ctx := context.Background()
	if _, err := peers["a"].mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := peers["c"].mu.Lock(ctx) // queued behind a
		got <- err
	}()
	waitUntil(t, func() bool {
		return len(peers["b"].mu.State().Queue) == 2
	})
	if err := peers["c"].mu.Close(ctx); err != nil { // withdraws c's request, and flushes
		t.Fatal(err)
	}
	if err := peers["c"].tcp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, lamportmutex.ErrClosed) {
		t.Fatalf("Lock during Close = %v", err)
	}
	for _, id := range []string{"a", "b"} {
		waitUntil(t, func() bool {
			st := peers[id].mu.State()
			for _, tok := range st.Queue {
				if tok.ID == "c" {
					return false
				}
			}
			return true
		})
	}
	if err := peers["a"].mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
}
