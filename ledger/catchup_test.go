package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// transfers commits k transfers from node from to node to, one at a time.
func (c *crashCluster) transfers(t *testing.T, from, to string, k int) {
	t.Helper()
	for range k {
		if _, err := c.node(from).Transfer(context.Background(), to, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// cutAtNextBlock cuts the network between holder and peer as soon as
// holder has made its next block, before its release leaves.
func (c *crashCluster) cutAtNextBlock(holder, peer string) {
	c.setOnLocal(func(id string) {
		if id == holder {
			_ = c.net.Partition(holder, peer)
		}
	})
}

// waitFetched waits until node id reported at least k blocks inserted by
// catch-up, and returns how many it reported.
func (c *crashCluster) waitFetched(t *testing.T, id string, k int) int {
	t.Helper()
	count := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.fetched[id]
	}
	waitFor(t, fmt.Sprintf("%d blocks fetched by node %s", k, id), func() bool { return count() >= k })
	return count()
}

// A client whose data folder was lost starts from genesis and fetches the
// whole chain from its peers, several batches of it, verifying each block.
func TestCatchUpAfterLostData(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 1, 0, 16)
	defer c.close()
	c.transfers(t, "1", "2", 150)
	c.transfers(t, "2", "3", 50)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c.converge(ctx)

	start := time.Now()
	c.crash("3", true)
	if err := c.node("3").WaitHeight(ctx, 200); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	chain := c.converge(ctx)
	// Events come just after the blocks are inserted.
	if got := c.waitFetched(t, "3", 200); got != 200 {
		t.Errorf("node 3 inserted %d blocks by catch-up, want 200", got)
	}
	// It works as before: its own transfer lands on the common chain.
	c.transfers(t, "3", "1", 1)
	if got := c.converge(ctx); len(got) != len(chain)+1 {
		t.Fatalf("chain of %d blocks after one more transfer, want %d", len(got), len(chain)+1)
	}
	t.Logf("a client with no data caught up on 200 blocks in %v (restart included)", took)
}

// A client that died while a block was on its way to it gets the block
// from its peers when it comes back.
func TestCatchUpMissedBlockInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 2, 0, 4)
	defer c.close()
	c.transfers(t, "2", "1", 3)
	// Node 1's next release to node 3 is held by a cut...
	c.cutAtNextBlock("1", "3")
	c.transfers(t, "1", "2", 1)
	c.setOnLocal(nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := c.node("2").WaitHeight(ctx, 4); err != nil {
		t.Fatal(err)
	}
	// ...and node 3 dies before it arrives: the release is dropped.
	c.crash("3", false)
	if err := c.net.Heal("1", "3"); err != nil {
		t.Fatal(err)
	}
	c.converge(ctx)
	if got := c.waitFetched(t, "3", 1); got != 1 {
		t.Fatalf("node 3 fetched %d blocks, want the one it missed", got)
	}
	c.transfers(t, "3", "1", 1)
	c.converge(ctx)
}

// A holder that dies after its release reached one peer but not the other,
// and loses its data too: the block lives on at the peer that has it, and
// reaches the other before anyone appends after it.
func TestCatchUpHolderDiedMidRelease(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 3, 0, 4)
	defer c.close()
	c.transfers(t, "3", "1", 2)
	c.cutAtNextBlock("1", "3") // the release reaches 2, not 3
	res, err := c.node("1").Transfer(context.Background(), "2", 5)
	if err != nil {
		t.Fatal(err)
	}
	c.setOnLocal(nil)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := c.node("2").WaitHeight(ctx, res.Block.Height); err != nil {
		t.Fatal(err)
	}
	if h := c.node("3").Head().Height; h >= res.Block.Height {
		t.Fatalf("node 3 has height %d: the cut did not hold the release", h)
	}
	c.crash("1", true)
	if err := c.net.Heal("1", "3"); err != nil {
		t.Fatal(err)
	}
	// Node 3 appends next; its block must go after node 1's.
	r3, err := c.node("3").Transfer(context.Background(), "2", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Block.Height != res.Block.Height+1 {
		t.Fatalf("node 3's block at height %d, want %d (after the dead holder's)", r3.Block.Height, res.Block.Height+1)
	}
	chain := c.converge(ctx)
	if chain[res.Block.Height].Hash != res.Block.Hash {
		t.Fatal("the dead holder's committed block is not in the converged chain")
	}
}

// BenchmarkCatchUp measures how fast a client whose ledger file was lost
// fetches the chain from its peers (3 nodes over the channel network, the
// default batch), per block, against the baseline of the same cluster
// committing those blocks in the first place (8 concurrent submitters per
// node, group commit). Metrics: ns/block-caught-up, ns/block-committed and
// their ratio.
func BenchmarkCatchUp(b *testing.B) {
	const blocks = 3000
	var caught, commit time.Duration
	for b.Loop() {
		b.StopTimer()
		c := newCrashCluster(b, 3, 1, 0, 0)
		start := time.Now()
		var wg sync.WaitGroup
		for _, id := range c.ids {
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range blocks / 24 {
						if _, err := c.node(id).Transfer(context.Background(), c.ids[(slicesIndex(c.ids, id)+1)%3], 1); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
		}
		wg.Wait()
		ctx := context.Background()
		for _, id := range c.ids {
			if err := c.node(id).WaitHeight(ctx, blocks); err != nil {
				b.Fatal(err)
			}
		}
		commit += time.Since(start)
		b.StartTimer()
		start = time.Now()
		c.crash("3", true)
		if err := c.node("3").WaitHeight(ctx, blocks); err != nil {
			b.Fatal(err)
		}
		caught += time.Since(start)
		b.StopTimer()
		c.close()
		b.StartTimer()
	}
	n := float64(b.N) * blocks
	b.ReportMetric(float64(caught.Nanoseconds())/n, "ns/block-caught-up")
	b.ReportMetric(float64(commit.Nanoseconds())/n, "ns/block-committed")
	b.ReportMetric(float64(caught)/float64(commit), "catch-up/commit")
}

// gapLocker grants at once, one holder at a time, and records what the
// node sends on the catch-up channel. It never reports a PeerUp.
type gapLocker struct {
	mu    sync.Mutex
	sem   chan struct{}
	clock uint64
	id    string
	sent  int
}

func newGapLocker(id string) *gapLocker { return &gapLocker{sem: make(chan struct{}, 1), id: id} }

func (l *gapLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return lamportmutex.Token{}, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clock++
	return lamportmutex.Token{Clock: l.clock, ID: l.id}, nil
}

func (l *gapLocker) Unlock([]byte) error { <-l.sem; return nil }

func (l *gapLocker) Quarantine(string, error) {}

func (l *gapLocker) Send(string, []byte) error {
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
	return nil
}

func (l *gapLocker) sends() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

// catchUpBlocks encodes a catch-up message carrying blocks (see syncmsg.go:
// magic 'S', version 1, op 3, then a batch).
func catchUpBlocks(t *testing.T, blocks []ledger.Block) []byte {
	t.Helper()
	batch, err := ledger.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{'S', 2, 3}, batch...)
}

// A node far behind gets releases it must hold until a gap fills, beyond
// MaxPending of its head. It keeps those within the window, drops the
// others and asks its peers for what it lacks, instead of failing; the
// catch-up batch that fills the gap then goes in, with the held blocks
// after it.
func TestCatchUpFillsGapBeyondPending(t *testing.T) {
	defer goleak.VerifyNone(t)
	ids := []string{"1", "2"}
	newNode := func(id string, l *gapLocker, onEvent func(ledger.Event)) *ledger.Node {
		n, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(ids, crashBalance), OnEvent: onEvent})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.SetLocker(l); err != nil {
			t.Fatal(err)
		}
		return n
	}
	prod := newNode("2", newGapLocker("2"), nil) // makes the chain
	defer prod.Close(context.Background())
	const total = 100 + ledger.MaxPending + 500
	for range total {
		if _, err := prod.Transfer(context.Background(), "1", 1); err != nil {
			t.Fatal(err)
		}
	}
	chain := prod.Blocks()

	l := newGapLocker("1")
	inserted := make(chan uint64, total)
	lag := newNode("1", l, func(ev ledger.Event) {
		if ev.Kind == ledger.EventBlockInserted {
			inserted <- ev.Block.Height
		}
	})
	defer lag.Close(context.Background())
	for lo := 101; lo <= total; lo++ { // releases of 101.., one sealed block each, as prod made them
		payload, err := ledger.EncodeBatch(chain[lo : lo+1])
		if err != nil {
			t.Fatal(err)
		}
		if err := lag.HandleRelease("2", payload); err != nil {
			t.Fatalf("release of blocks from %d: %v", lo, err)
		}
	}
	lag.HandleMessage("2", catchUpBlocks(t, chain[1:101])) // fills the gap
	want := uint64(ledger.MaxPending)
	for h := range want {
		if got := <-inserted; got != h+1 {
			t.Fatalf("inserted block %d, want %d", got, h+1)
		}
	}
	if err := lag.Err(); err != nil {
		t.Fatalf("node failed: %v", err)
	}
	if h := lag.Head().Height; h != want {
		t.Fatalf("head %d, want %d: the held blocks go in, those beyond the window were dropped", h, want)
	}
	// It announced its head to its peer, to get the dropped blocks back.
	waitFor(t, "an announcement to the peer", func() bool { return l.sends() > 0 })
}

// A Mutex closed while its node's committer holds the lock with a block
// made but not yet released does not release the lock without it (that
// forked the chain): the peers wait for the node's next incarnation, whose
// block the next holder then fetches before it appends.
func TestCloseMidCommitDoesNotFork(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 1, 0, 1)
	defer c.close()
	for _, id := range c.ids { // every node has synced once, so no round is due
		c.transfers(t, id, c.ids[(slicesIndex(c.ids, id)+1)%3], 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c.converge(ctx)

	type outcome struct {
		res ledger.Result
		err error
	}
	other := make(chan outcome, 1)
	var once sync.Once
	c.setOnLocal(func(id string) {
		if id != "1" {
			return
		}
		once.Do(func() {
			// Node 1 holds the lock and has made its block; node 2 asks for
			// the lock meanwhile...
			go func() {
				res, err := c.node("2").Transfer(ctx, "3", 1)
				other <- outcome{res, err}
			}()
			mu1 := c.member("1").mu
			for {
				st, err := mu1.State(), mu1.Err()
				if err != nil {
					t.Error(err)
					return
				}
				if slices.ContainsFunc(st.Queue, func(tok lamportmutex.Token) bool { return tok.ID == "2" }) {
					break
				}
			}
			_ = mu1.Close(context.Background()) // ...and node 1's mutex is closed under it
		})
	})
	_, err := c.node("1").Transfer(ctx, "2", 1)
	c.setOnLocal(nil)
	if err == nil {
		t.Fatal("node 1's Transfer succeeded although its release never left")
	}
	made := c.node("1").Head()
	c.crash("1", false) // node 1 comes back on its file
	o := <-other
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.Block.Height != made.Height+1 {
		t.Fatalf("node 2's block at height %d, want %d: after node 1's %s", o.res.Block.Height, made.Height+1, made.Hash.Short())
	}
	if chain := c.converge(ctx); chain[made.Height].Hash != made.Hash {
		t.Fatal("node 1's persisted block is not in the converged chain")
	}
}

// A client whose ledger file was lost is sent each missing block at most
// once by each peer, not once per announcement.
func TestCatchUpSendsEachBlockOncePerPeer(t *testing.T) {
	defer goleak.VerifyNone(t)
	var counting atomic.Bool
	var delivered atomic.Int64
	c := newCrashClusterOpts(t, 3, transport.ChanOptions{Seed: 1, OnDeliver: func(m lamportmutex.Message) {
		// Catch-up blocks for node 3: a DATA message 'S', 2, 3, batch.
		if !counting.Load() || m.Kind != lamportmutex.Data || m.To != "3" || len(m.Payload) < 3 || m.Payload[2] != 3 {
			return
		}
		if blocks, err := ledger.DecodeBatch(m.Payload[3:]); err == nil {
			delivered.Add(int64(len(blocks)))
		}
	}}, 16)
	defer c.close()
	const blocks = 200
	c.transfers(t, "1", "2", blocks)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c.converge(ctx)
	counting.Store(true)
	c.crash("3", true)
	if err := c.node("3").WaitHeight(ctx, blocks); err != nil {
		t.Fatal(err)
	}
	c.transfers(t, "3", "1", 1) // its sync round: the last catch-up traffic
	c.converge(ctx)
	got := delivered.Load()
	t.Logf("node 3 was sent %d blocks by catch-up for %d missing (%.1fx)", got, blocks, float64(got)/blocks)
	if got > 2*blocks {
		t.Errorf("node 3 was sent %d catch-up blocks for %d missing: more than once per peer", got, blocks)
	}
}

// A client cut off from the network (the transport's disconnect hook)
// holds everyone's transfers up while the cut lasts, and loses nothing:
// once it is reconnected every transfer commits and the chains agree.
func TestNetworkCutHeals(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newCrashCluster(t, 3, 4, 100*time.Microsecond, 4)
	defer c.close()
	c.transfers(t, "1", "2", 2)
	if err := c.net.Disconnect("3"); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 4)
	for _, id := range []string{"1", "2", "1", "2"} {
		go func() {
			_, err := c.node(id).Transfer(context.Background(), "3", 1)
			results <- err
		}()
	}
	// While the cut lasts nobody can commit: every request needs 3's reply.
	for _, id := range []string{"1", "2"} {
		waitFor(t, "node "+id+" waiting for node 3", func() bool {
			return slices.Contains(c.member(id).mu.State().Missing, "3")
		})
	}
	if h := c.node("1").Head().Height; h != 2 {
		t.Fatalf("height %d during the cut, want 2", h)
	}
	if err := c.net.Reconnect("3"); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if chain := c.converge(ctx); len(chain) != 7 {
		t.Fatalf("%d blocks after genesis, want 6", len(chain)-1)
	}
}

// waitFor polls cond until it holds, or fails after hangGuard (which only
// turns a hang into a failure).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, hangGuard)
		}
		time.Sleep(time.Millisecond)
	}
}

// pausingLocker is a real Mutex whose Lock, once granted, waits for the
// test before it returns: the gap between the committer's grant and its
// Unlock, made wide.
type pausingLocker struct {
	*lamportmutex.Mutex
	granted chan struct{}
	resume  chan struct{}
}

func (l *pausingLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	tok, err := l.Mutex.Lock(ctx)
	if err == nil {
		l.granted <- struct{}{}
		<-l.resume
	}
	return tok, err
}

// A clean shutdown in the documented order (node, then mutex) releases the
// mutex even when the committer holds it for a Transfer whose caller gave
// up: closing the mutex first would keep the lock (Close does not release
// a lock its holder may have written under), and every peer would wait for
// this client's restart.
func TestShutdownReleasesTheMutex(t *testing.T) {
	defer goleak.VerifyNone(t)
	ids := []string{"1", "2"}
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close(context.Background())
	nodes := map[string]*ledger.Node{}
	mus := map[string]*lamportmutex.Mutex{}
	pl := &pausingLocker{granted: make(chan struct{}, 1), resume: make(chan struct{})}
	for _, id := range ids {
		n, err := ledger.NewUnwired(ledger.Config{ID: id, Signer: ledger.TestKey(id), Genesis: ledger.GenesisForTest(ids, 0)})
		if err != nil {
			t.Fatal(err)
		}
		ep, err := net.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		mu, err := lamportmutex.New(n.MutexConfig(lamportmutex.Config{ID: id, Peers: ids, Transport: ep}))
		if err != nil {
			t.Fatal(err)
		}
		var l ledger.Locker = mu
		if id == "1" {
			pl.Mutex = mu
			l = pl
		}
		if err := n.SetLocker(l); err != nil {
			t.Fatal(err)
		}
		nodes[id], mus[id] = n, mu
	}
	defer func() { _ = nodes["2"].Close(context.Background()); _ = mus["2"].Close(context.Background()) }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := nodes["1"].Transfer(ctx, "2", 1)
		done <- err
	}()
	<-pl.granted // the committer holds the mutex
	cancel()     // Ctrl-C: the caller gives up
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Transfer = %v, want context.Canceled", err)
	}
	before := mus["1"].Stats().Sent[lamportmutex.Release]
	closed := make(chan error, 1)
	go func() { closed <- nodes["1"].Close(context.Background()) }() // waits for the committer
	close(pl.resume)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	_ = mus["1"].Close(context.Background())
	if after := mus["1"].Stats().Sent[lamportmutex.Release]; after == before {
		t.Fatal("client 1 shut down while its committer held the mutex, and no RELEASE left")
	}
}
