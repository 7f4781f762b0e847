package ledger_test

// Crash, restart and catch-up of whole nodes over the real mutex and the
// channel network: a crash is ChanNetwork.Restart (the dead incarnation's
// undelivered messages are dropped, in both directions) followed by a new
// Node on the same ledger file.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// hangGuard bounds a wait for something that happens unless the code under
// test is broken. It is no performance bound: it only turns a hang into a
// failure with context.
const hangGuard = 2 * time.Minute

// crashBalance is every client's initial balance: enough that transfers
// rarely fail for funds.
const crashBalance = 1_000_000

// crashCluster is a ledger whose nodes the test crashes and restarts.
type crashCluster struct {
	t        testing.TB
	ids      []string
	net      *transport.ChanNetwork
	dir      string
	genesis  ledger.Block
	maxBatch int

	mu      sync.Mutex
	members map[string]*member
	onLocal func(id string) // called when a node made blocks, before its release
	fetched map[string]int  // blocks inserted by catch-up, per node
	refused map[string]int  // peers refused, per node
}

// member is one incarnation of a node.
type member struct {
	node    *ledger.Node
	mu      *lamportmutex.Mutex
	crashed atomic.Bool // set before it is killed
}

func newCrashCluster(t testing.TB, n int, seed int64, maxDelay time.Duration, maxBatch int) *crashCluster {
	t.Helper()
	return newCrashClusterOpts(t, n, transport.ChanOptions{Seed: seed, MaxDelay: maxDelay}, maxBatch)
}

func newCrashClusterOpts(t testing.TB, n int, opts transport.ChanOptions, maxBatch int) *crashCluster {
	t.Helper()
	ids := memberIDs(n)
	net, err := transport.NewChanNetwork(ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ledger.NewGenesis(ids, crashBalance, testPub)
	if err != nil {
		t.Fatal(err)
	}
	c := &crashCluster{t: t, ids: ids, net: net, dir: t.TempDir(), genesis: g, maxBatch: maxBatch,
		members: map[string]*member{}, fetched: map[string]int{}, refused: map[string]int{}}
	for _, id := range ids {
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		c.start(id, ep)
	}
	return c
}

func (c *crashCluster) path(id string) string { return filepath.Join(c.dir, id+".log") }

// start runs a node for id on its file and endpoint.
func (c *crashCluster) start(id string, ep lamportmutex.Transport) {
	c.t.Helper()
	// NoSync: a crash here kills no OS, and what was written survives.
	st, err := ledger.OpenFileStore(c.path(id), c.genesis, ledger.FileOptions{NoSync: true})
	if err != nil {
		c.t.Fatal(err)
	}
	node, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(c.ids, crashBalance), Store: st, MaxBatch: c.maxBatch,
		OnEvent: func(ev ledger.Event) { c.event(id, ev) }})
	if err != nil {
		c.t.Fatal(err)
	}
	mu, err := lamportmutex.New(node.MutexConfig(lamportmutex.Config{ID: id, Peers: c.ids, Transport: ep}))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := node.SetLocker(hookLocker{Mutex: mu, c: c, id: id}); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.members[id] = &member{node: node, mu: mu}
	c.mu.Unlock()
}

func (c *crashCluster) event(id string, ev ledger.Event) {
	if ev.Kind == ledger.EventPeerRefused {
		c.mu.Lock()
		c.refused[id]++
		c.mu.Unlock()
	}
	if ev.Kind != ledger.EventBlockInserted {
		return
	}
	c.mu.Lock()
	if ev.Fetched {
		c.fetched[id]++
	}
	c.mu.Unlock()
}

// hookLocker is a member's mutex that calls the cluster's onLocal hook
// before a release that carries blocks.
type hookLocker struct {
	*lamportmutex.Mutex
	c  *crashCluster
	id string
}

func (l hookLocker) Unlock(payload []byte) error {
	l.c.mu.Lock()
	hook := l.c.onLocal
	l.c.mu.Unlock()
	if payload != nil && hook != nil {
		hook(l.id)
	}
	return l.Mutex.Unlock(payload)
}

// setOnLocal sets the hook called when a node inserted its own block,
// before its release; nil removes it.
func (c *crashCluster) setOnLocal(f func(id string)) {
	c.mu.Lock()
	c.onLocal = f
	c.mu.Unlock()
}

func (c *crashCluster) node(id string) *ledger.Node { return c.member(id).node }

func (c *crashCluster) member(id string) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id]
}

// crash kills id's incarnation and starts the next one on the same file,
// or, with loseData, on a new one.
func (c *crashCluster) crash(id string, loseData bool) {
	c.t.Helper()
	old := c.member(id)
	old.crashed.Store(true)
	ep, err := c.net.Restart(id)
	if err != nil {
		c.t.Fatal(err)
	}
	_ = old.mu.Close(context.Background()) // it stopped when its endpoint died; nothing more leaves it
	_ = old.node.Close(context.Background())
	if loseData {
		if err := os.Remove(c.path(id)); err != nil {
			c.t.Fatal(err)
		}
	}
	c.start(id, ep)
}

func (c *crashCluster) close() {
	c.mu.Lock()
	members := c.members
	c.mu.Unlock()
	for _, m := range members {
		_ = m.mu.Close(context.Background())
	}
	_ = c.net.Close(context.Background())
	for _, m := range members {
		_ = m.node.Close(context.Background())
	}
}

// converge waits until every node has the same head, and checks that the
// chains are identical and verify, that money is conserved, and that no
// node stopped. It returns the common chain.
func (c *crashCluster) converge(ctx context.Context) []ledger.Block {
	c.t.Helper()
	for {
		var top uint64
		for _, id := range c.ids {
			if n := c.node(id); n.Err() != nil {
				c.t.Fatalf("node %s stopped: %v", id, n.Err())
			} else {
				top = max(top, n.Head().Height)
			}
		}
		for _, id := range c.ids {
			if err := c.node(id).WaitHeight(ctx, top); err != nil {
				c.t.Fatalf("node %s did not reach height %d (at %d): %v", id, top, c.node(id).Head().Height, err)
			}
		}
		if c.sameHeads() {
			break
		}
	}
	want := c.node(c.ids[0]).Blocks()
	for _, id := range c.ids {
		n := c.node(id)
		got := n.Blocks()
		if len(got) != len(want) {
			c.t.Fatalf("node %s has %d blocks, node %s %d", id, len(got), c.ids[0], len(want))
		}
		for h := range got {
			if got[h].Hash != want[h].Hash {
				c.t.Fatalf("nodes %s and %s differ at height %d: %s vs %s", id, c.ids[0], h, got[h].Hash.Short(), want[h].Hash.Short())
			}
		}
		if err := n.Verify(); err != nil {
			c.t.Fatalf("node %s: %v", id, err)
		}
		if sum := total(c.t, n.Balances()); sum != int64(len(c.ids))*crashBalance {
			c.t.Fatalf("node %s: balances add up to %d, want %d", id, sum, int64(len(c.ids))*crashBalance)
		}
	}
	return want
}

// heads describes every node's head, for failure messages.
func (c *crashCluster) heads() string {
	var b strings.Builder
	for _, id := range c.ids {
		m := c.member(id)
		st, err := m.mu.State(), m.mu.Err()
		fmt.Fprintf(&b, "\n  %s at %d %s (err %v), mutex %+v (err %v), stats %+v", id, m.node.Head().Height,
			m.node.Head().Hash.Short(), m.node.Err(), st, err, m.mu.Stats())
	}
	return b.String()
}

func (c *crashCluster) sameHeads() bool {
	head := c.node(c.ids[0]).Head()
	for _, id := range c.ids[1:] {
		if c.node(id).Head().Hash != head.Hash {
			return false
		}
	}
	return true
}

// committed is a transfer whose Transfer call returned success.
type committed struct {
	node  string
	block ledger.Block
}

// TestCrashRestartCatchUp runs concurrent transfers on every node while a
// chaos loop crashes and restarts nodes at random moments (some right after
// a node inserted its own block, before or while its release goes out,
// some with the network between two nodes cut for a while), for many
// seeds. After the last restart every chain must converge to one verified
// chain that holds every transfer reported as committed; money is conserved.
// LAMPORT_LEDGER_SEEDS sets the number of seeds, LAMPORT_LEDGER_SEED runs
// one.
func TestCrashRestartCatchUp(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	if s := os.Getenv("LAMPORT_LEDGER_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
	}
	first := int64(1)
	if s := os.Getenv("LAMPORT_LEDGER_SEED"); s != "" {
		first, _ = strconv.ParseInt(s, 10, 64)
		seeds = 1
	}
	var crashes, blocks, fetched int
	for seed := first; seed < first+int64(seeds); seed++ {
		c, b, f := runCrashSeed(t, seed)
		if t.Failed() {
			t.Fatalf("seed %d failed (LAMPORT_LEDGER_SEED=%d replays its choices, not its timing)", seed, seed)
		}
		crashes, blocks, fetched = crashes+c, blocks+b, fetched+f
	}
	t.Logf("%d seeds: %d crashes survived, %d committed blocks checked on every replica, %d blocks inserted by catch-up",
		seeds, crashes, blocks, fetched)
}

func runCrashSeed(t *testing.T, seed int64) (crashes, blocks, fetched int) {
	defer goleak.VerifyNone(t)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	n := 3 + rng.IntN(2)
	c := newCrashCluster(t, n, seed, time.Duration(rng.IntN(300))*time.Microsecond, 1+rng.IntN(8))
	defer c.close()

	ctx, stop := context.WithCancel(context.Background())
	var (
		mu        sync.Mutex
		done      []committed
		progress  = make(chan struct{}, 1)
		failure   error
		failed    = make(chan struct{})
		wg        sync.WaitGroup
		submitted int
	)
	for i, id := range c.ids {
		for g := range 2 {
			wg.Add(1)
			r := rand.New(rand.NewPCG(uint64(seed), uint64(10*i+g)))
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					m := c.member(id)
					to := c.ids[(i+1+r.IntN(len(c.ids)-1))%len(c.ids)]
					res, err := m.node.Transfer(ctx, to, 1+r.Int64N(3))
					mu.Lock()
					submitted++
					switch {
					case err == nil:
						done = append(done, committed{node: id, block: res.Block})
						select {
						case progress <- struct{}{}:
						default:
						}
					case errors.Is(err, ledger.ErrInsufficientFunds), ctx.Err() != nil:
					case m.crashed.Load(): // crashed under the call
					case failure == nil:
						failure = fmt.Errorf("node %s: transfer: %w", id, err)
						close(failed)
					}
					mu.Unlock()
				}
			}()
		}
	}
	// wait waits for ch, or fails the test if a transfer failed or
	// nothing happens for hangGuard (which only turns a hang into a
	// failure with context).
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-failed:
			stop()
			wg.Wait()
			t.Fatalf("seed %d: %v", seed, failure)
		case <-time.After(hangGuard):
			t.Fatalf("seed %d: no %s in %v; heads: %s", seed, what, hangGuard, c.heads())
		}
	}
	// waitProgress waits for k more committed transfers.
	waitProgress := func(k int) {
		t.Helper()
		for range k {
			wait("progress", progress)
		}
	}
	rounds := 4 + rng.IntN(4)
	for range rounds {
		waitProgress(1 + rng.IntN(6))
		victim := c.ids[rng.IntN(len(c.ids))]
		switch rng.IntN(4) {
		case 0: // crash the holder right after it made its block
			armed := make(chan struct{})
			var once sync.Once
			c.setOnLocal(func(id string) {
				if id == victim {
					once.Do(func() { close(armed) })
				}
			})
			wait("block made by node "+victim, armed)
			c.setOnLocal(nil)
			if rng.IntN(2) == 0 {
				runtime.Gosched() // let part of the release out
			}
			c.crash(victim, false)
			crashes++
		case 1: // cut the network between two nodes for a while; it heals without loss
			other := c.ids[(slicesIndex(c.ids, victim)+1)%len(c.ids)]
			if err := c.net.Partition(victim, other); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // a random length of cut, not a synchronisation
			if err := c.net.Heal(victim, other); err != nil {
				t.Fatal(err)
			}
		default: // crash at a random moment
			for range rng.IntN(50) {
				runtime.Gosched()
			}
			c.crash(victim, false)
			crashes++
		}
	}
	waitProgress(3) // the cluster works after the last restart
	stop()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if failure != nil {
		t.Fatalf("seed %d: %v", seed, failure)
	}
	cctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	chain := c.converge(cctx)
	for _, d := range done {
		h := d.block.Height
		if h >= uint64(len(chain)) || chain[h].Hash != d.block.Hash {
			t.Fatalf("seed %d: transfer committed by node %s in block %d %s is not in the converged chain", seed, d.node, h, d.block.Hash.Short())
		}
	}
	c.mu.Lock()
	for _, f := range c.fetched {
		fetched += f
	}
	c.mu.Unlock()
	return crashes, len(done), fetched
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
