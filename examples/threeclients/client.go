package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// options are the settings shared by every client of this process.
type options struct {
	peers   map[string]string // id -> address
	members []string
	balance int64
	delay   time.Duration
	trace   bool
	dataDir string
	memory  bool
	// ids are every member's certificate and public key, and the private
	// keys of this process's clients.
	ids *identities
	// insecure turns TLS off: plaintext, peers unauthenticated.
	insecure bool
	// maxBatch is ledger.Config.MaxBatch; algorithm is the mutex's.
	maxBatch  int
	algorithm lamportmutex.Algorithm
	// listeners are the listening sockets of this process's clients, opened
	// by listenAll before any client starts. startClient hands a client's
	// to its transport, or closes it if it fails before.
	listeners map[string]net.Listener
	out       *printer
	logger    *slog.Logger
}

// client is one member of the ledger: its store, node, transport and mutex.
type client struct {
	id    string
	opts  options
	out   *printer
	node  *ledger.Node
	tcp   *transport.TCP
	delay *delayTransport // nil without -delay
	mu    *lamportmutex.Mutex
	work  sync.WaitGroup // transfers in flight
	ctx   context.Context
	stop  context.CancelFunc

	watchDone chan struct{}
}

// startClient opens the client's ledger, listens, and starts its mutex.
func startClient(id string, opts options) (_ *client, err error) {
	c := &client{id: id, opts: opts, out: opts.out, watchDone: make(chan struct{})}
	if ln := opts.listeners[id]; ln != nil {
		defer func() {
			if err != nil && c.tcp == nil {
				_ = ln.Close()
			}
		}()
	}
	// The genesis binds every member's key: the one in its certificate.
	genesis, err := ledger.NewGenesis(opts.members, opts.balance, opts.ids.keys)
	if err != nil {
		return nil, err
	}
	var store ledger.Store
	where := "memory"
	if opts.memory {
		store, err = ledger.NewMemStore(genesis)
	} else {
		if err := os.MkdirAll(opts.dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data folder: %w", err)
		}
		where = filepath.Join(opts.dataDir, "client-"+id+".log")
		store, err = ledger.OpenFileStore(where, genesis, ledger.FileOptions{Logger: opts.logger})
	}
	if err != nil {
		return nil, storeHint(err, id, where, opts.dataDir)
	}
	c.node, err = ledger.NewNode(ledger.Config{
		ID: id, Members: opts.members, Keys: opts.ids.keys, Signer: opts.ids.priv[id], InitialBalance: opts.balance, Store: store,
		MaxBatch: opts.maxBatch, Logger: opts.logger, OnEvent: c.onEvent,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	head := c.node.Head()
	c.out.say(id, "ledger %s (%d clients, %d each) in %s: %d blocks after genesis recovered, head #%d %s",
		genesis.Hash.Short(), len(opts.members), opts.balance, where, head.Height, head.Height, head.Hash.Short())

	tcfg := transport.TCPConfig{
		ID: id, ListenAddr: opts.peers[id], Listener: opts.listeners[id], Peers: opts.peers,
		Cluster: clusterName(genesis.Hash, opts.algorithm), Logger: opts.logger,
	}
	if !opts.insecure {
		tcfg.TLS = opts.ids.tlsConfig(id)
	}
	c.tcp, err = transport.NewTCP(tcfg)
	if err != nil {
		_ = c.node.Close()
		return nil, fmt.Errorf("listen on %s: %w", opts.peers[id], err)
	}
	var tr lamportmutex.Transport = c.tcp
	if opts.delay > 0 {
		c.delay = newDelayTransport(c.tcp, opts.delay)
		tr = c.delay
	}
	// The node's handlers: blocks with releases, catch-up messages and
	// restarts; and StartClock, so that requests after a restart are stamped
	// after every block this client has and block clocks keep increasing.
	cfg := c.node.MutexConfig(lamportmutex.Config{ID: id, Peers: opts.members, Transport: tr, Algorithm: opts.algorithm, Logger: opts.logger})
	if opts.trace {
		cfg.Trace = c.onTrace
	}
	c.mu, err = lamportmutex.New(cfg)
	if err != nil {
		_ = c.tcp.Close()
		_ = c.node.Close()
		return nil, err
	}
	if err := c.node.SetLocker(c.mu); err != nil {
		c.close()
		return nil, err
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	auth := "mutual TLS with the certificates in " + opts.ids.dir
	if opts.insecure {
		auth = "plaintext, peers NOT authenticated (-insecure); blocks signed with the key in " + opts.ids.dir
	}
	c.out.say(id, "listening on %s (%s); connecting to %s", c.tcp.Addr(), auth, c.others())
	go c.watchPeers()
	return c, nil
}

func (c *client) others() string {
	var s []string
	for _, id := range c.opts.members {
		if id != c.id {
			s = append(s, id+"="+c.opts.peers[id])
		}
	}
	return strings.Join(s, ", ")
}

// watchPeers says once when every peer is connected both ways.
func (c *client) watchPeers() {
	defer close(c.watchDone)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		all := true
		for _, p := range c.tcp.Status() {
			all = all && p.Connected && p.Inbound
		}
		if all {
			c.say("all peers connected")
			return
		}
	}
}

// transfer runs one transfer in the background and prints its outcome.
func (c *client) transfer(to string, amount int64) {
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		done := make(chan struct{})
		go c.reportWaiting(done)
		res, err := c.node.Transfer(c.ctx, to, amount)
		close(done)
		if err != nil {
			now, _ := c.node.Balance(c.id)
			reason := err.Error()
			switch {
			case errors.Is(err, ledger.ErrInsufficientFunds):
				reason = fmt.Sprintf("insufficient funds: client %s has %d, needs %d", c.id, now, amount)
			case errors.Is(err, context.Canceled):
				reason = "cancelled"
			}
			c.say("transfer %s -> %s amount %d: FAILED: %s (balance before %d, after %d)",
				c.id, to, amount, reason, now, now)
			return
		}
		c.say("transfer %s -> %s amount %d: SUCCESS (balance before %d, after %d; block #%d %s)",
			c.id, to, amount, res.Before[c.id], res.After[c.id], res.Block.Height, res.Block.Hash.Short())
	}()
}

// reportWaiting says, while a transfer waits for the lock, which peers it
// still waits for.
func (c *client) reportWaiting(done <-chan struct{}) {
	t := time.NewTimer(2*time.Second + c.opts.delay*2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		st, err := c.mu.State(c.ctx)
		if err != nil {
			return
		}
		if len(st.Missing) > 0 {
			c.say("transfer waiting for the lock: no reply yet from %s%s",
				strings.Join(st.Missing, ", "), c.disconnected(st.Missing))
		} else if len(st.Queue) > 0 && st.Queue[0].ID != c.id {
			c.say("transfer waiting for the lock: client %s is ahead", st.Queue[0].ID)
		}
		t.Reset(5 * time.Second)
	}
}

func (c *client) disconnected(ids []string) string {
	var down []string
	for _, p := range c.tcp.Status() {
		for _, id := range ids {
			if p.ID == id && !(p.Connected && p.Inbound) {
				down = append(down, id)
			}
		}
	}
	if len(down) == 0 {
		return ""
	}
	return " (not connected: " + strings.Join(down, ", ") + ")"
}

func (c *client) onEvent(ev ledger.Event) {
	switch ev.Kind {
	case ledger.EventBlockInserted:
		if !ev.Local {
			b := ev.Block
			how := ""
			if ev.Fetched {
				how = ", caught up: it was missed while a client was down"
			}
			c.say("block #%d %s from client %s inserted: %s -> %s amount %d (clock %d%s)",
				b.Height, b.Hash.Short(), ev.From, b.Transfer.From, b.Transfer.To, b.Transfer.Amount, b.Clock, how)
		}
	case ledger.EventPeerRefused:
		c.say("refused bad input from client %s, which is cut off until it restarts: %v", ev.From, ev.Err)
	case ledger.EventDisagreement:
		c.say("client %s sent a block for a height where this client has another member's block; refused, and transfers will wait: %v", ev.From, ev.Err)
	case ledger.EventDropped:
		c.say("%d ledger events were not shown: this client's output fell behind", ev.Dropped)
	case ledger.EventFailed:
		c.say("LEDGER STOPPED: %v", ev.Err)
	}
}

func (c *client) onTrace(ev lamportmutex.Event) {
	verb, peer := "received", ev.Message.From
	if ev.Sent {
		verb, peer = "sent", ev.Message.To
	}
	payload := ""
	if len(ev.Message.Payload) > 0 {
		payload = fmt.Sprintf(" with a %d-byte block", len(ev.Message.Payload))
	}
	c.say("trace: %s %s@%d %s %s%s; clock now %d",
		verb, ev.Message.Kind, ev.Message.Clock, map[bool]string{true: "to", false: "from"}[ev.Sent], peer, payload, ev.Clock)
}

// close waits for transfers in flight, withdraws from the mutex, lets the
// transport deliver what it holds, and closes everything.
func (c *client) close() {
	c.work.Wait()
	if c.stop != nil {
		c.stop()
		<-c.watchDone
	}
	// The node first: its committer releases the mutex (with its blocks, if
	// it was committing) before the mutex stops.
	if err := c.node.Close(); err != nil {
		c.say("closing ledger: %v", err)
	}
	_ = c.mu.Close()
	if c.delay != nil {
		_ = c.delay.Close()
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.tcp.Drain(drainCtx) // let the peers have what we just sent
	cancel()
	_ = c.tcp.Close()
}

// say prints one line as this client.
func (c *client) say(format string, args ...any) {
	c.out.say(c.id, format, args...)
}
