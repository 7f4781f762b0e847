package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// raftGroup is the floor the ledger is compared with: hashicorp/raft with
// ledgerNodes voters over raft's own TCP transport on loopback, each
// applying transfers to a balanceFSM. Its logs and stable state are in
// memory (raft.InmemStore), or, if durable, in raft-boltdb, which fsyncs
// every batch of log entries it stores.
//
// Its configuration is raft.DefaultConfig but for two settings: logging
// off, and snapshots off (SnapshotThreshold and SnapshotInterval too high
// to be reached), since the ledger under comparison keeps its whole chain
// and a snapshot in the timed window would charge raft for work the
// ledger does not do. Timeouts, MaxAppendEntries (64) and BatchApplyCh
// (off) are the defaults.
type raftGroup struct {
	ids   []string
	nodes []*raftNode
}

// raftNode is one voter of a raftGroup.
type raftNode struct {
	r     *raft.Raft
	tr    *raft.NetworkTransport
	fsm   *balanceFSM
	bolt  *raftboltdb.BoltStore // nil unless durable
	ready bool                  // r started; Shutdown is owed
}

// startRaft starts a raftGroup, with its bolt files in dir if durable, and
// waits until it has elected a leader or ctx is done.
func startRaft(ctx context.Context, dir string, durable bool) (_ *raftGroup, err error) {
	g := &raftGroup{ids: peerIDs(ledgerNodes)}
	defer func() {
		if err != nil {
			err = errors.Join(err, g.close())
		}
	}()
	var servers []raft.Server
	for _, id := range g.ids {
		tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, hclog.NewNullLogger())
		if err != nil {
			return nil, fmt.Errorf("raft: transport: %w", err)
		}
		g.nodes = append(g.nodes, &raftNode{tr: tr, fsm: newBalanceFSM(ledgerNodes, ledgerBalance)})
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: tr.LocalAddr()})
	}
	for i, id := range g.ids {
		nd := g.nodes[i]
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(id)
		cfg.Logger = hclog.NewNullLogger()
		cfg.SnapshotThreshold = math.MaxUint64
		cfg.SnapshotInterval = 24 * 365 * time.Hour
		var logs raft.LogStore
		var stable raft.StableStore
		if durable {
			if nd.bolt, err = raftboltdb.NewBoltStore(filepath.Join(dir, id+".bolt")); err != nil {
				return nil, fmt.Errorf("raft: bolt store: %w", err)
			}
			logs, stable = nd.bolt, nd.bolt
		} else {
			mem := raft.NewInmemStore()
			logs, stable = mem, mem
		}
		snaps := raft.NewDiscardSnapshotStore()
		if err := raft.BootstrapCluster(cfg, logs, stable, snaps, nd.tr, raft.Configuration{Servers: servers}); err != nil {
			return nil, fmt.Errorf("raft: bootstrap %s: %w", id, err)
		}
		if nd.r, err = raft.NewRaft(cfg, nd.fsm, logs, stable, snaps, nd.tr); err != nil {
			return nil, fmt.Errorf("raft: start %s: %w", id, err)
		}
		nd.ready = true
	}
	if _, err := g.leader(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// leader waits until a node is the leader and returns it.
func (g *raftGroup) leader(ctx context.Context) (*raftNode, error) {
	for {
		for _, nd := range g.nodes {
			if nd.r.State() == raft.Leader {
				return nd, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("raft: no leader: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// apply commits cmd through leader and returns the FSM's answer.
func (g *raftGroup) apply(leader *raftNode, cmd []byte) error {
	f := leader.r.Apply(cmd, 0)
	if err := f.Error(); err != nil {
		return err
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// converge waits until every node's FSM has applied as many transfers as
// the leader's and returns that count. Call it when no Apply is
// outstanding: each returned after the leader's FSM applied its entry.
// (Raft's AppliedIndex can run ahead of the FSM, which applies on a
// goroutine of its own, so it does not serve here.)
func (g *raftGroup) converge(ctx context.Context, leader *raftNode) (uint64, error) {
	want := leader.fsm.state().applied
	for {
		done := true
		for _, nd := range g.nodes {
			done = done && nd.fsm.state().applied >= want
		}
		if done {
			return want, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raft: FSMs behind the leader's %d transfers: %w", want, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// identical checks that every FSM applied the same transfers to the same
// balances, and that no money was made or lost.
func (g *raftGroup) identical() error {
	ref := g.nodes[0].fsm.state()
	var total int64
	for _, b := range ref.balances {
		total += b
	}
	if want := int64(len(ref.balances)) * ledgerBalance; total != want {
		return fmt.Errorf("raft: balances add up to %d, want %d", total, want)
	}
	for i, nd := range g.nodes[1:] {
		if st := nd.fsm.state(); st.applied != ref.applied || fmt.Sprint(st.balances) != fmt.Sprint(ref.balances) {
			return fmt.Errorf("raft: %s applied %d transfers to %v, %s %d to %v",
				g.ids[i+1], st.applied, st.balances, g.ids[0], ref.applied, ref.balances)
		}
	}
	return nil
}

// close shuts every node down, then the transports and stores. A
// transport's Close leaves its pooled connections open, and with them the
// goroutines serving them at the other end: CloseStreams closes them.
func (g *raftGroup) close() error {
	var errs []error
	for _, nd := range g.nodes {
		if nd.ready {
			errs = append(errs, nd.r.Shutdown().Error())
		}
	}
	for _, nd := range g.nodes {
		nd.tr.CloseStreams()
		errs = append(errs, nd.tr.Close())
		if nd.bolt != nil {
			errs = append(errs, nd.bolt.Close())
		}
	}
	g.nodes = nil
	return errors.Join(errs...)
}

// raftBench measures committed transfers per second through a raftGroup
// with submitters goroutines calling Apply on the leader, n transfers after
// a warm-up of warm.
func raftBench(dir string, durable bool, submitters int, n, warm int64) (_ Sample, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), versusPatience(n))
	defer cancel()
	g, err := startRaft(ctx, dir, durable)
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, g.close()) }()
	cmd := func(k int) []byte {
		i := k % ledgerNodes
		return encodeTransfer(i, (i+1+k/ledgerNodes%(ledgerNodes-1))%ledgerNodes, 1)
	}
	// A submitter follows the leader, as raft's clients do: an Apply that
	// failed because its node lost the lead is sent again to the next
	// leader. One that failed with ErrLeadershipLost may have been
	// committed all the same, so the count of retries bounds the transfers
	// committed beyond those acknowledged.
	var retried atomic.Int64
	op := func(ctx context.Context, k int) error {
		for {
			leader, err := g.leader(ctx)
			if err != nil {
				return err
			}
			err = g.apply(leader, cmd(k))
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
				if err != nil {
					return fmt.Errorf("submitter %d: %w", k, err)
				}
				return nil
			}
			retried.Add(1)
		}
	}
	if _, err := submit(ctx, submitters, budget{n: warm}.start(), op); err != nil {
		return Sample{}, err
	}
	leader, err := g.leader(ctx)
	if err != nil {
		return Sample{}, err
	}
	a0, err := g.converge(ctx, leader)
	if err != nil {
		return Sample{}, err
	}
	start := time.Now()
	lat, err := submit(ctx, submitters, budget{n: n}.start(), op)
	if err != nil {
		return Sample{}, err
	}
	window := time.Since(start)
	if leader, err = g.leader(ctx); err != nil {
		return Sample{}, err
	}
	a1, err := g.converge(ctx, leader)
	if err != nil {
		return Sample{}, err
	}
	s := latencySample(lat, window)
	s.Committed = int64(a1 - a0)
	s.Retried = retried.Load()
	if s.Committed < s.Ops || s.Committed > s.Ops+s.Retried {
		return s, fmt.Errorf("raft: %d applies returned success (%d retried) but %d transfers were applied", s.Ops, s.Retried, s.Committed)
	}
	if err := g.identical(); err != nil {
		return s, err
	}
	s.Identical = true
	return s, nil
}

// transferSize is the length of an encoded transfer: payer, payee, amount.
const transferSize = 1 + 1 + 8

// encodeTransfer encodes a transfer of amount from account i to account j.
func encodeTransfer(i, j int, amount int64) []byte {
	b := make([]byte, transferSize)
	b[0], b[1] = byte(i), byte(j)
	binary.BigEndian.PutUint64(b[2:], uint64(amount))
	return b
}

// decodeTransfer decodes a transfer among accounts accounts, refusing any
// other length, an account out of range, a transfer to oneself and an
// amount that is not positive.
func decodeTransfer(b []byte, accounts int) (i, j int, amount int64, err error) {
	if len(b) != transferSize {
		return 0, 0, 0, fmt.Errorf("transfer of %d bytes, want %d", len(b), transferSize)
	}
	i, j, amount = int(b[0]), int(b[1]), int64(binary.BigEndian.Uint64(b[2:]))
	switch {
	case i >= accounts || j >= accounts:
		return 0, 0, 0, fmt.Errorf("transfer between accounts %d and %d of %d", i, j, accounts)
	case i == j:
		return 0, 0, 0, fmt.Errorf("transfer from account %d to itself", i)
	case amount <= 0:
		return 0, 0, 0, fmt.Errorf("transfer of %d", amount)
	}
	return i, j, amount, nil
}

// errOverdraft is a transfer refused for lack of funds.
var errOverdraft = errors.New("insufficient funds")

// balanceFSM is the raft floor's state machine: the balances of the
// accounts, to which each log entry applies one transfer, refusing an
// overdraft, as the ledger does.
type balanceFSM struct {
	mu sync.Mutex
	fsmState
}

// fsmState is what a balanceFSM holds.
type fsmState struct {
	balances []int64
	applied  uint64 // transfers applied
}

func newBalanceFSM(accounts int, balance int64) *balanceFSM {
	f := &balanceFSM{}
	f.balances = make([]int64, accounts)
	for i := range f.balances {
		f.balances[i] = balance
	}
	return f
}

// Apply applies the transfer in l and returns nil, or the error that
// refused it.
func (f *balanceFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, j, amount, err := decodeTransfer(l.Data, len(f.balances))
	if err != nil {
		return err
	}
	if f.balances[i] < amount {
		return errOverdraft
	}
	f.balances[i] -= amount
	f.balances[j] += amount
	f.applied++
	return nil
}

// state returns a copy of the FSM's state.
func (f *balanceFSM) state() fsmState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fsmState{balances: append([]int64(nil), f.balances...), applied: f.applied}
}

// errNoSnapshots is returned by Snapshot and Restore: the floor's
// configuration never takes a snapshot.
var errNoSnapshots = errors.New("the raft floor takes no snapshots")

func (f *balanceFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errNoSnapshots }

func (f *balanceFSM) Restore(rc io.ReadCloser) error {
	return errors.Join(errNoSnapshots, rc.Close())
}

// raftVersus is raftBench in a new folder under dir.
func raftVersus(dir string, durable bool, submitters int, n, warm int64) (_ Sample, err error) {
	tmp, err := os.MkdirTemp(dir, "lamportledger-raft-*")
	if err != nil {
		return Sample{}, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	return raftBench(tmp, durable, submitters, n, warm)
}
