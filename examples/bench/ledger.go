package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// ledgerNodes is the number of replicas of the ledger measurement.
const ledgerNodes = 3

// ledgerBalance is every member's initial balance: large enough that no
// transfer of 1 is ever refused.
const ledgerBalance = 1 << 40

// ledgerBench measures committed transfers per second with submitters
// goroutines spread over three nodes over TCP loopback, each node with a
// FileStore in a new folder under dir, fsynced after every append if durable.
func ledgerBench(dir string, durable bool, submitters int, bud budget) (_ Sample, err error) {
	tmp, err := os.MkdirTemp(dir, "lamportledger-bench-*")
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()

	ids := peerIDs(ledgerNodes)
	keys, signers, err := newKeys(ids)
	if err != nil {
		return Sample{}, err
	}
	genesis, err := ledger.NewGenesis(ids, ledgerBalance, keys)
	if err != nil {
		return Sample{}, err
	}
	c, err := newTransports(overTCP, ledgerNodes)
	if err != nil {
		return Sample{}, err
	}
	// The nodes own the transports from NewNode on, and close them.
	var nodes []*ledger.Node
	defer func() {
		for _, n := range nodes {
			err = errors.Join(err, n.Close(context.Background()))
		}
	}()
	for i, id := range ids {
		st, err := ledger.OpenFileStore(filepath.Join(tmp, id+".log"), genesis, ledger.FileOptions{NoSync: !durable})
		if err == nil {
			var n *ledger.Node
			if n, err = ledger.NewNode(ledger.Config{ID: id, Genesis: genesis, Signer: signers[id], Store: st}, c.trs[i]); err == nil {
				nodes = append(nodes, n)
				c.views = append(c.views, nodeView{n})
				continue
			}
		} else {
			_ = c.trs[i].Close(context.Background())
		}
		for _, t := range c.trs[i+1:] {
			_ = t.Close(context.Background())
		}
		return Sample{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()

	phase := func(m *meter) ([]time.Duration, error) {
		var wg sync.WaitGroup
		lats := make([][]time.Duration, submitters)
		errs := make([]error, submitters)
		for k := range submitters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				i := k % ledgerNodes
				to := ids[(i+1+k/ledgerNodes%(ledgerNodes-1))%ledgerNodes]
				for m.next() {
					t0 := time.Now()
					if _, err := nodes[i].Transfer(ctx, to, 1); err != nil {
						errs[k] = fmt.Errorf("submitter %d at %s: %w", k, ids[i], err)
						return
					}
					lats[k] = append(lats[k], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		return slices.Concat(lats...), errors.Join(errs...)
	}
	if _, err := phase(bud.warmup().start()); err != nil {
		return Sample{}, err
	}
	h0, err := converge(ctx, nodes)
	if err != nil {
		return Sample{}, err
	}
	t0, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	start := time.Now()
	lat, err := phase(bud.start())
	if err != nil {
		return Sample{}, err
	}
	window := time.Since(start)
	h1, err := converge(ctx, nodes)
	if err != nil {
		return Sample{}, err
	}
	t1, err := c.counts(ctx)
	if err != nil {
		return Sample{}, err
	}
	s := latencySample(lat, window)
	s.Committed = int64(h1 - h0)
	s.Rate = float64(s.Committed) / window.Seconds()
	if e := t1.entries - t0.entries; e > 0 {
		s.BlocksPerEntry = float64(s.Committed) / float64(e)
	}
	if s.Committed != s.Ops {
		return s, fmt.Errorf("ledger: %d transfers returned success but %d blocks were added", s.Ops, s.Committed)
	}
	if err := identical(nodes); err != nil {
		return s, err
	}
	s.Identical = true
	return s, nil
}

// converge waits until every replica has the same height and returns it,
// the height of the slowest replica. The last holder's block reaches the
// others with its release, just after its Transfer returned.
func converge(ctx context.Context, nodes []*ledger.Node) (uint64, error) {
	for {
		lo, hi := nodes[0].Head().Height, nodes[0].Head().Height
		for _, n := range nodes[1:] {
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
func identical(nodes []*ledger.Node) error {
	ref := nodes[0].Blocks()
	for _, n := range nodes {
		if err := n.Verify(); err != nil {
			return fmt.Errorf("ledger: %s: %w", n.ID(), err)
		}
		bs := n.Blocks()
		if len(bs) != len(ref) {
			return fmt.Errorf("ledger: %s has %d blocks, %s has %d", n.ID(), len(bs), nodes[0].ID(), len(ref))
		}
		for i := range bs {
			if bs[i].Hash != ref[i].Hash {
				return fmt.Errorf("ledger: %s and %s differ at height %d", n.ID(), nodes[0].ID(), i)
			}
		}
	}
	return nil
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

// nodeView reads a ledger node's mutex for cluster.counts.
type nodeView struct{ n *ledger.Node }

func (v nodeView) State() lamportmutex.State { return v.n.LockState() }
func (v nodeView) Stats() lamportmutex.Stats { return v.n.LockStats() }
