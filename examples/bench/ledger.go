package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// ledgerNodes is the number of replicas of the ledger measurement.
const ledgerNodes = 3

// ledgerBalance is every member's initial balance: large enough that no
// transfer of 1 is ever refused.
const ledgerBalance = 1 << 40

// ledgerGroup is the ledger under test: ledgerNodes nodes over TCP
// loopback, each with a FileStore in dir. Everything that knows how a
// ledger is built and wired is in startLedger and openLedgerNode; the
// measurements use only the methods below.
type ledgerGroup struct {
	dir     string
	durable bool
	ids     []string
	keys    map[string]ed25519.PublicKey
	signers map[string]ed25519.PrivateKey
	genesis ledger.Block
	nodes   []*ledger.Node
	c       *cluster
}

// startLedger starts a ledger of ledgerNodes nodes with new stores in dir,
// fsynced after every append if durable.
func startLedger(dir string, durable bool) (_ *ledgerGroup, err error) {
	g := &ledgerGroup{dir: dir, durable: durable, ids: peerIDs(ledgerNodes)}
	if g.keys, g.signers, err = newKeys(g.ids); err != nil {
		return nil, err
	}
	if g.genesis, err = ledger.NewGenesis(g.ids, ledgerBalance, g.keys); err != nil {
		return nil, err
	}
	if g.c, err = newTransports(overTCP, ledgerNodes); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, g.close())
		}
	}()
	for i, id := range g.ids {
		n, err := g.openNode(id, g.c.trs[i])
		if err != nil {
			for _, t := range g.c.trs[i+1:] { // the nodes own the ones before
				_ = t.Close(context.Background())
			}
			g.c.tcps = nil
			return nil, err
		}
		g.nodes = append(g.nodes, n)
		g.c.views = append(g.c.views, nodeView{n})
	}
	g.c.tcps = nil // the nodes own the transports now, and close them
	return g, nil
}

// openNode opens id's store and starts its node on tr: the whole of a
// restart.
func (g *ledgerGroup) openNode(id string, tr lamportmutex.Transport) (*ledger.Node, error) {
	st, err := ledger.OpenFileStore(filepath.Join(g.dir, id+".log"), g.genesis, ledger.FileOptions{NoSync: !g.durable})
	if err != nil {
		_ = tr.Close(context.Background())
		return nil, err
	}
	return ledger.NewNode(ledger.Config{ID: id, Genesis: g.genesis, Signer: g.signers[id], Store: st}, tr)
}

// transfer commits a transfer of 1 from node i to node j.
func (g *ledgerGroup) transfer(ctx context.Context, i, j int) error {
	_, err := g.nodes[i].Transfer(ctx, g.ids[j], 1)
	return err
}

// nodeView reads a ledger node's mutex for cluster.counts.
type nodeView struct{ n *ledger.Node }

func (v nodeView) State() lamportmutex.State { return v.n.LockState() }
func (v nodeView) Stats() lamportmutex.Stats { return v.n.LockStats() }

// converge waits until every replica has the same height and returns it,
// the height of the slowest replica. The last holder's block reaches the
// others with its release, just after its Transfer returned.
func (g *ledgerGroup) converge(ctx context.Context) (uint64, error) {
	for {
		lo, hi := g.nodes[0].Head().Height, g.nodes[0].Head().Height
		for _, n := range g.nodes[1:] {
			h := n.Head().Height
			lo, hi = min(lo, h), max(hi, h)
		}
		if lo == hi {
			return lo, nil
		}
		select {
		case <-ctx.Done():
			return lo, fmt.Errorf("ledger: replicas stuck at heights %d..%d: %w", lo, hi, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// identical verifies every replica's chain and checks that all are the
// same, block by block.
func (g *ledgerGroup) identical() error {
	ref := g.nodes[0].Blocks()
	for _, n := range g.nodes {
		if err := n.Verify(); err != nil {
			return fmt.Errorf("ledger: %s: %w", n.ID(), err)
		}
		bs := n.Blocks()
		if len(bs) != len(ref) {
			return fmt.Errorf("ledger: %s has %d blocks, %s has %d", n.ID(), len(bs), g.nodes[0].ID(), len(ref))
		}
		for i := range bs {
			if bs[i].Hash != ref[i].Hash {
				return fmt.Errorf("ledger: %s and %s differ at height %d", n.ID(), g.nodes[0].ID(), i)
			}
		}
	}
	return nil
}

// entries returns the mutex entries of every node so far, once the group
// is quiet (see cluster.counts).
func (g *ledgerGroup) entries(ctx context.Context) (uint64, error) {
	t, err := g.c.counts(ctx)
	return t.entries, err
}

// close closes the nodes, which close their mutexes, transports and
// stores. It may be called again.
func (g *ledgerGroup) close() error {
	var errs []error
	for _, n := range g.nodes {
		errs = append(errs, n.Close(context.Background()))
	}
	g.nodes = nil
	return errors.Join(errs...)
}

// restart opens the store of the group's first member again, after
// close, and returns how long it took until the node was ready and the
// bytes allocated meanwhile.
func (g *ledgerGroup) restart() (time.Duration, uint64, error) {
	// The node starts on a transport of its own, with no peer up: the
	// restart is measured up to a node ready to join its group.
	net, err := transport.NewChanNetwork(g.ids, transport.ChanOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer net.Close(context.Background())
	ep, err := net.Endpoint(g.ids[0])
	if err != nil {
		return 0, 0, err
	}
	a0 := totalAlloc()
	t0 := time.Now()
	n, err := g.openNode(g.ids[0], ep)
	took := time.Since(t0)
	alloc := totalAlloc() - a0
	if err != nil {
		return 0, 0, fmt.Errorf("ledger: restart %s: %w", g.ids[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return 0, 0, err // what it sent its peers, which are down, is not delivered
	}
	return took, alloc, nil
}

// ledgerBench measures committed transfers per second with submitters
// goroutines spread over three nodes over TCP loopback, each node with a
// FileStore in a new folder under dir, fsynced after every append if durable.
func ledgerBench(dir string, durable bool, submitters int, bud budget) (_ Sample, err error) {
	tmp, err := os.MkdirTemp(dir, "lamportledger-bench-*")
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	g, err := startLedger(tmp, durable)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, g.close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()

	op := ledgerOp(g)
	if _, err := submit(ctx, submitters, bud.warmup().start(), op); err != nil {
		return Sample{}, err
	}
	h0, err := g.converge(ctx)
	if err != nil {
		return Sample{}, err
	}
	e0, err := g.entries(ctx)
	if err != nil {
		return Sample{}, err
	}
	start := time.Now()
	lat, err := submit(ctx, submitters, bud.start(), op)
	if err != nil {
		return Sample{}, err
	}
	window := time.Since(start)
	h1, err := g.converge(ctx)
	if err != nil {
		return Sample{}, err
	}
	e1, err := g.entries(ctx)
	if err != nil {
		return Sample{}, err
	}
	s := latencySample(lat, window)
	s.Committed = int64(h1 - h0)
	s.Rate = float64(s.Committed) / window.Seconds()
	if e := e1 - e0; e > 0 {
		s.BlocksPerEntry = float64(s.Committed) / float64(e)
	}
	if s.Committed != s.Ops {
		return s, fmt.Errorf("ledger: %d transfers returned success but %d blocks were added", s.Ops, s.Committed)
	}
	if err := g.identical(); err != nil {
		return s, err
	}
	s.Identical = true
	return s, nil
}

// ledgerOp returns the operation of submitter k: a transfer of 1 from node
// k mod ledgerNodes to one of the others, alternating between them across
// submitters.
func ledgerOp(g *ledgerGroup) func(context.Context, int) error {
	return func(ctx context.Context, k int) error {
		i := k % ledgerNodes
		j := (i + 1 + k/ledgerNodes%(ledgerNodes-1)) % ledgerNodes
		if err := g.transfer(ctx, i, j); err != nil {
			return fmt.Errorf("submitter %d at %s: %w", k, g.ids[i], err)
		}
		return nil
	}
}

// newKeys makes a fresh Ed25519 key pair for each of ids.
func newKeys(ids []string) (map[string]ed25519.PublicKey, map[string]ed25519.PrivateKey, error) {
	pubs := make(map[string]ed25519.PublicKey, len(ids))
	privs := make(map[string]ed25519.PrivateKey, len(ids))
	for _, id := range ids {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, nil, err
		}
		pubs[id], privs[id] = pub, priv
	}
	return pubs, privs, nil
}
