package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// gateLocker is a single-node Locker whose grants the test releases one at
// a time, recording every Lock call and Unlock payload.
type gateLocker struct {
	grant    chan struct{}
	mu       sync.Mutex
	locks    int
	payloads [][]byte
	clock    uint64
	waiting  chan struct{} // receives once per Lock call that starts waiting
}

func newGateLocker() *gateLocker {
	return &gateLocker{grant: make(chan struct{}), waiting: make(chan struct{}, 100)}
}

func (g *gateLocker) Lock(ctx context.Context) (lamportmutex.Token, error) {
	g.waiting <- struct{}{}
	select {
	case <-g.grant:
	case <-ctx.Done():
		return lamportmutex.Token{}, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.locks++
	g.clock++
	return lamportmutex.Token{Clock: g.clock, ID: "1"}, nil
}

func (g *gateLocker) Send(string, []byte) error { return errNoPeers }

func (g *gateLocker) Quarantine(string, error) {}

func (g *gateLocker) Unlock(p []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.payloads = append(g.payloads, p)
	return nil
}

// countingStore counts Append calls (each one sync in a FileStore).
type countingStore struct {
	ledger.Store
	mu      sync.Mutex
	appends int
}

func (s *countingStore) Append(b ...ledger.Block) error {
	s.mu.Lock()
	s.appends++
	s.mu.Unlock()
	return s.Store.Append(b...)
}

func newGatedNode(t *testing.T, maxBatch int) (*ledger.Node, *gateLocker, *countingStore) {
	t.Helper()
	members := []string{"1", "2"}
	g, _ := ledger.NewGenesis(members, 1000, testPub)
	ms, _ := ledger.NewMemStore(g)
	st := &countingStore{Store: ms}
	n, err := ledger.NewUnwired(ledger.Config{ID: "1", Signer: ledger.TestKey("1"), Genesis: ledger.GenesisForTest(members, 1000), Store: st, MaxBatch: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	gl := newGateLocker()
	if err := n.SetLocker(gl); err != nil {
		t.Fatal(err)
	}
	return n, gl, st
}

// Transfers submitted while the node waits for the mutex share one entry:
// one Lock, one store append, one release carrying every block in order.
func TestGroupCommit(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct{ maxBatch, transfers, wantEntries int }{
		{0, 10, 2}, // the first transfer's entry, then the nine that queued behind it
		{4, 10, 4}, // 1, then 4, 4, 1
		{1, 5, 5},  // the textbook: one entry per transfer
	} {
		t.Run(fmt.Sprintf("maxBatch=%d", tc.maxBatch), func(t *testing.T) {
			n, gl, st := newGatedNode(t, tc.maxBatch)
			defer n.Close(context.Background())
			results := make(chan error, tc.transfers)
			go func() {
				_, err := n.Transfer(context.Background(), "2", 1)
				results <- err
			}()
			<-gl.waiting // the committer waits for the mutex with the first transfer
			var wg sync.WaitGroup
			for i := 1; i < tc.transfers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := n.Transfer(context.Background(), "2", int64(i+1))
					results <- err
				}()
			}
			// Every other transfer queues behind the first entry.
			for ledger.QueueLen(n) < tc.transfers-1 {
				runtime.Gosched()
			}
			done := 0
			for done < tc.transfers {
				select {
				case gl.grant <- struct{}{}:
				case err := <-results:
					if err != nil {
						t.Fatal(err)
					}
					done++
				}
			}
			if got := n.Head().Height; got != uint64(tc.transfers) {
				t.Fatalf("height %d, want %d", got, tc.transfers)
			}
			gl.mu.Lock()
			defer gl.mu.Unlock()
			if gl.locks > tc.wantEntries {
				t.Fatalf("%d mutex entries for %d transfers, want at most %d", gl.locks, tc.transfers, tc.wantEntries)
			}
			var blocks int
			for _, p := range gl.payloads {
				bs, err := ledger.DecodeBatch(p)
				if err != nil {
					t.Fatal(err)
				}
				if limit := tc.maxBatch; limit > 0 && len(bs) > limit {
					t.Fatalf("batch of %d blocks, limit %d", len(bs), limit)
				}
				blocks += len(bs)
			}
			if blocks != tc.transfers || st.appends != gl.locks {
				t.Fatalf("%d blocks released, %d store appends, %d entries", blocks, st.appends, gl.locks)
			}
			if err := n.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A transfer whose ctx ends while it waits for the mutex is not applied,
// and when no transfer is left the committer withdraws its Lock.
func TestGroupCommitCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, gl, _ := newGatedNode(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	id := ledger.NewTransferID()
	go func() {
		_, err := n.TransferWithID(ctx, id, "2", 5)
		errc <- err
	}()
	<-gl.waiting
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled transfer: %v", err)
	}
	// The committer's Lock was withdrawn: a new transfer makes a new Lock.
	go func() {
		_, err := n.Transfer(context.Background(), "2", 7)
		errc <- err
	}()
	<-gl.waiting
	gl.grant <- struct{}{}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b, _ := n.Balance("1"); b != 993 {
		t.Fatalf("balance %d, want 993: the cancelled transfer must not apply", b)
	}
	// Retrying the cancelled ID applies it once.
	go func() {
		_, err := n.TransferWithID(context.Background(), id, "2", 5)
		errc <- err
	}()
	<-gl.waiting
	gl.grant <- struct{}{}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b, _ := n.Balance("1"); b != 988 {
		t.Fatalf("balance %d, want 988", b)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Close fails transfers still waiting for the mutex, and stops the
// committer.
func TestGroupCommitClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, gl, _ := newGatedNode(t, 0)
	errc := make(chan error, 1)
	go func() {
		_, err := n.Transfer(context.Background(), "2", 5)
		errc <- err
	}()
	<-gl.waiting
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("transfer during Close: %v", err)
	}
	if _, err := n.Transfer(context.Background(), "2", 1); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("transfer after Close: %v", err)
	}
}

// In one batch a transfer the balance cannot pay is refused while the
// others go ahead, in submission order.
func TestGroupCommitRefusesWithinBatch(t *testing.T) {
	defer goleak.VerifyNone(t)
	n, gl, _ := newGatedNode(t, 0)
	defer n.Close(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := n.Transfer(context.Background(), "2", 600)
		first <- err
	}()
	<-gl.waiting
	gl.grant <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Balance 400 now; 300 fits, then 300 does not, then 100 does.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, amount := range []int64{300, 300, 100} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.Transfer(context.Background(), "2", amount)
		}()
	}
	for range 3 { // each may need its own entry, depending on timing
		select {
		case gl.grant <- struct{}{}:
		case <-waitGroupDone(&wg):
		}
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		if errors.Is(err, ledger.ErrInsufficientFunds) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := n.Balance("1"); refused != 1 || (b != 0 && b != 100) {
		t.Fatalf("refused %d, balance %d", refused, b)
	}
}

func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}
