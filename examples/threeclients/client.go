package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// live is the -http page's hub; nil without -http.
	live *liveHub
	// local holds the ids of this process's clients.
	local  map[string]bool
	out    *printer
	logger *slog.Logger
}

// client is one member of the ledger: its node, which owns its store, mutex
// and transport.
type client struct {
	id    string
	opts  options
	out   *printer
	node  *ledger.Node
	tcp   *transport.TCP
	delay *delayTransport // nil without -delay
	// ctx ends when the client abandons what it was given (stop).
	ctx  context.Context
	stop context.CancelFunc

	// The worker's queue (see work), and what it has not finished: queued
	// counts commands queued or running, inBackground transfers given with
	// &, which background also tracks for close.
	cmds         chan command
	queued       tally
	inBackground tally
	background   sync.WaitGroup
	workerDone   chan struct{}
	txids        *transferIDs
	// siblings are the other clients of this process, set before the
	// worker starts.
	siblings []*client
	// connected is closed when every peer is first connected both ways;
	// gone when the client starts closing.
	connected chan struct{}
	gone      chan struct{}

	watchStop context.CancelFunc // stops watchPeers
	watchDone chan struct{}
	peerWake  chan struct{} // buffered 1: a peer came up; watchPeers looks now

	// transfers counts this client's transfers under way.
	transfers atomic.Int64
	// clock is the mutex's Lamport clock as its last Trace event left it:
	// read without asking the mutex's goroutine, for the @clock on every
	// line.
	clock atomic.Uint64
	// lastBatch is the release payload the last trace line listed; only
	// the mutex's goroutine (onTrace) uses it.
	lastBatch []byte
	// Blocks fetched from peers (catch-up) and not reported yet, and when
	// the last one came, in Unix nanoseconds.
	fetched     atomic.Int64
	fetchedLast atomic.Int64
}

// startClient opens the client's ledger, listens, and starts its mutex.
func startClient(id string, opts options) (_ *client, err error) {
	c := &client{id: id, opts: opts, out: opts.out, watchDone: make(chan struct{}), peerWake: make(chan struct{}, 1),
		cmds: make(chan command, cmdQueue), workerDone: make(chan struct{}), connected: make(chan struct{}), gone: make(chan struct{})}
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
	if opts.live != nil {
		store = timedStore{Store: store, append: opts.live.metrics.storeAppend.WithLabelValues(id), sync: opts.live.metrics.storeSync.WithLabelValues(id)}
	}
	tcfg := transport.TCPConfig{
		ID: id, ListenAddr: opts.peers[id], Listener: opts.listeners[id], Peers: opts.peers,
		Cluster: clusterName(genesis.Hash, opts.algorithm), Logger: opts.logger,
	}
	if !opts.insecure {
		tcfg.TLS = opts.ids.tlsConfig(id)
	}
	if !opts.memory {
		tcfg.Incarnation, err = nextIncarnation(filepath.Join(opts.dataDir, "client-"+id+".incarnation"), time.Now())
		if err != nil {
			_ = store.Close()
			return nil, err
		}
	}
	c.tcp, err = transport.NewTCP(tcfg)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("listen on %s: %w", opts.peers[id], err)
	}
	var tr lamportmutex.Transport = c.tcp
	if opts.delay > 0 {
		c.delay = newDelayTransport(c.tcp, opts.delay)
		tr = c.delay
	}
	// The node owns the transport, its mutex and the store from here on.
	c.node, err = ledger.NewNode(ledger.Config{
		ID: id, Genesis: genesis, Signer: opts.ids.priv[id], Store: store, MaxBatch: opts.maxBatch,
		Algorithm: opts.algorithm, Trace: c.onTrace, Logger: opts.logger, OnEvent: c.onEvent,
	}, tr)
	if err != nil {
		_ = c.tcp.Close(context.Background())
		return nil, err
	}
	head := c.node.Head()
	c.txids = newTransferIDs(id)
	if err := c.txids.skipPast(c.node.BlocksFrom(recentFrom(head.Height, len(opts.members)))); err != nil {
		_ = c.node.Close(context.Background())
		_ = c.tcp.Close(context.Background()) // under a -delay wrapper, which does not close it
		return nil, fmt.Errorf("read the newest blocks: %w", err)
	}
	c.clock.Store(max(c.clock.Load(), head.Clock)) // the mutex starts there
	c.say("ledger %s (%d clients, %d each) in %s: %d blocks after genesis recovered, head #%d %s",
		genesis.Hash.Short(), len(opts.members), opts.balance, where, head.Height, head.Height, head.Hash.Short())
	if opts.live != nil {
		opts.live.attach(c)
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	auth := "mutual TLS with the certificates in " + opts.ids.dir
	if opts.insecure {
		auth = "plaintext, peers NOT authenticated (-insecure); blocks signed with the key in " + opts.ids.dir
	}
	c.say("listening on %s (%s); connecting to %s", c.tcp.Addr(), auth, c.others())
	watchCtx, watchStop := context.WithCancel(c.ctx)
	c.watchStop = watchStop
	go c.watchPeers(watchCtx)
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

// watchPeers says when every peer is first connected both ways, and
// then every time a peer goes down or comes back; and when blocks fetched
// from peers have stopped coming (catch-up is over), how many came. It
// looks every peerPoll, and at once when the mutex reports a peer up.
func (c *client) watchPeers(ctx context.Context) {
	defer close(c.watchDone)
	tick := time.NewTicker(peerPoll)
	defer tick.Stop()
	views := map[string]*peerView{}
	allSaid := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.peerWake:
		}
		all := true
		for _, st := range c.tcp.Status() {
			v := views[st.ID]
			if v == nil {
				v = &peerView{}
				views[st.ID] = v
			}
			c.reportPeer(ctx, st.ID, v.observe(st))
			all = all && v.up
		}
		if all && !allSaid {
			allSaid = true
			if len(c.opts.local) == 1 { // else the process says it once for all
				c.say("all peers connected")
			}
			close(c.connected)
		}
		if n := c.fetched.Load(); n > 0 && time.Since(time.Unix(0, c.fetchedLast.Load())) >= catchUpQuiet {
			c.fetched.Add(-n)
			c.say("caught up %d %s from peers", n, plural(n, "block", "blocks"))
		}
	}
}

// reportPeer prints what changed about peer.
func (c *client) reportPeer(ctx context.Context, peer string, ch peerChange) {
	if ch.down {
		verb := "is"
		if ch.back {
			verb = "was" // and is back already
		}
		c.say("client %s %s down%s", quoteID(peer), verb, c.needs(ctx, peer))
	}
	if ch.back {
		how := "reconnected"
		if ch.restarted {
			how = "restarted"
		}
		c.say("client %s is back (%s)", quoteID(peer), how)
	}
}

// needs is " (waiting transfers need it)" when this client has transfers
// under way that need peer: a request needs a later message from every
// peer, and a holder's first commit checks with every peer that it has
// every block (the ledger's catch-up round).
func (c *client) needs(ctx context.Context, peer string) string {
	if c.transfers.Load() == 0 {
		return ""
	}
	st := c.node.LockState()
	if c.node.Err() != nil || (len(st.Missing) > 0 && !slices.Contains(st.Missing, peer)) {
		return ""
	}
	return " (waiting transfers need it)"
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
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
		st := c.node.LockState()
		if c.node.Err() != nil {
			return
		}
		if len(st.Missing) > 0 {
			c.say("transfer waiting for the lock: no reply yet from %s%s",
				strings.Join(st.Missing, ", "), c.disconnected(st.Missing))
		} else if len(st.Queue) > 0 && st.Queue[0].ID != c.id {
			c.say("transfer waiting for the lock: client %s is ahead", st.Queue[0].ID)
		} else if st.Held {
			c.say("transfer holds the lock and waits for the ledger's catch-up round: every peer must say how far its chain goes%s",
				c.disconnected(slices.DeleteFunc(slices.Clone(c.opts.members), func(id string) bool { return id == c.id })))
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
	if c.opts.live != nil {
		c.opts.live.ledgerEvent(c.id, ev)
	}
	switch ev.Kind {
	case ledger.EventBlockInserted:
		if !ev.Local && !(c.sibling(ev.Block.Transfer.From) && !ev.Fetched) { // a sibling's transfer line says where its block is
			b := ev.Block
			how := ""
			if ev.Fetched {
				how = ", caught up: it was missed while a client was down"
				c.fetchedLast.Store(time.Now().UnixNano())
				c.fetched.Add(1)
			}
			c.say("block #%d %s from client %s inserted: %s -> %s amount %d (request clock %d%s)",
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

// onTrace keeps the clock for the lines this client prints and, with
// -trace, prints the event. It runs on the mutex's goroutine: it never
// waits.
func (c *client) onTrace(ev lamportmutex.Event) {
	if c.opts.live != nil {
		c.opts.live.trace(c.id, ev)
	}
	c.clock.Store(ev.Clock)
	if ev.Message.Kind == lamportmutex.PeerUp {
		select {
		case c.peerWake <- struct{}{}:
		default:
		}
	}
	if !c.opts.trace {
		return
	}
	p := ev.Message.Payload
	same := ev.Message.Kind == lamportmutex.Release && len(p) > 0 && bytes.Equal(p, c.lastBatch)
	if ev.Message.Kind == lamportmutex.Release && len(p) > 0 {
		c.lastBatch = p
	}
	c.say("%s", formatTrace(ev, time.Now(), same))
}

// close waits for transfers in flight, withdraws from the mutex, lets the
// transport deliver what it holds, and closes everything.
func (c *client) close() {
	close(c.gone)
	c.background.Wait()
	if c.stop != nil {
		c.quiet()
		c.stop()
	}
	// The node releases the mutex (with its blocks, if it was committing),
	// then lets the peers have what it sent, for a while.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.node.Close(ctx); err != nil {
		c.say("closing ledger: %v", err)
	}
	_ = c.tcp.Close(ctx) // under a -delay wrapper, which does not close it
}

// quiet stops reporting peers going down and coming back. A process that
// runs several clients calls it on each before it closes the first, so
// that the others do not report it down.
func (c *client) quiet() {
	c.watchStop()
	<-c.watchDone
}

// say prints one line as this client, with the mutex's clock.
func (c *client) say(format string, args ...any) {
	c.out.say(c.id, c.clock.Load(), format, args...)
}

// sibling reports whether id is another client of this process.
func (c *client) sibling(id string) bool {
	return id != c.id && c.opts.local[id]
}
