package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/lamportmutex/transporttest"
	"github.com/lamportledger/lamportledger/transport"
)

// TestConformanceChan runs the Transport conformance suite on the endpoints
// of a ChanNetwork: Restart restarts a peer, Partition and Heal cut a link.
func TestConformanceChan(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, ids []string) transporttest.Network {
		n, err := transport.NewChanNetwork(ids, transport.ChanOptions{QueueBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close(context.Background()) })
		trs := make([]lamportmutex.Transport, len(ids))
		for i, id := range ids {
			ep, err := n.Endpoint(id)
			if err != nil {
				t.Fatal(err)
			}
			trs[i] = ep
		}
		return transporttest.Network{
			Transports: trs,
			Restart: func(id string) (lamportmutex.Transport, error) {
				return n.Restart(id)
			},
			Cut:  n.Partition,
			Heal: n.Heal,
		}
	})
}

// TestConformanceTCP runs the Transport conformance suite on TCP transports
// on loopback. Every peer reaches every other through a proxy of the test's
// (one per ordered pair), so that Cut can break a pair's connections and
// refuse new ones until Heal. Restart closes a transport without waiting
// (a crash, as far as its peers can tell) and starts the next incarnation
// on the same port.
func TestConformanceTCP(t *testing.T) {
	transporttest.Run(t, func(t *testing.T, ids []string) transporttest.Network {
		c := newTCPCluster(t, ids)
		return transporttest.Network{
			Transports: c.start(ids...),
			Restart:    c.restart,
			Cut:        c.cut(true),
			Heal:       c.cut(false),
		}
	})
}

// tcpCluster is a group of TCP transports on loopback, each pair joined by
// proxies.
type tcpCluster struct {
	t       *testing.T
	log     *lockedBuffer // every transport's log, shown if the test fails
	cluster string        // unique, so that a port reused by another test process reaches no peer of ours
	ids     []string
	addrs   map[string]string            // each peer's listening address
	lns     map[string]net.Listener      // the first incarnations' listeners
	proxies map[[2]string]*proxy         // [dialer, peer]
	peers   map[string]map[string]string // each peer's Peers map (proxy addresses)

	mu  sync.Mutex
	trs map[string]*transport.TCP // the current incarnation of each
}

func newTCPCluster(t *testing.T, ids []string) *tcpCluster {
	c := &tcpCluster{
		t: t, ids: ids, addrs: make(map[string]string), lns: make(map[string]net.Listener), proxies: make(map[[2]string]*proxy),
		peers: make(map[string]map[string]string), trs: make(map[string]*transport.TCP), log: &lockedBuffer{},
		cluster: fmt.Sprintf("conformance-%x", rand.Uint64()),
	}
	t.Cleanup(func() { // registered first, so it runs after the transports are closed
		if t.Failed() {
			t.Logf("the transports' log:\n%s", c.log.String())
		}
	})
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.lns[id] = ln
		c.addrs[id] = ln.Addr().String()
	}
	for _, a := range ids {
		c.peers[a] = make(map[string]string)
		for _, b := range ids {
			if a != b {
				p := newProxy(t, c.addrs[b])
				c.proxies[[2]string{a, b}] = p
				c.peers[a][b] = p.addr()
			}
		}
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, tr := range c.trs {
			_ = tr.Close(context.Background())
		}
	})
	return c
}

// start makes the first incarnation of each of ids.
func (c *tcpCluster) start(ids ...string) []lamportmutex.Transport {
	trs := make([]lamportmutex.Transport, len(ids))
	for i, id := range ids {
		tr, err := c.newTCP(id, 0)
		if err != nil {
			c.t.Fatal(err)
		}
		trs[i] = tr
	}
	return trs
}

func (c *tcpCluster) newTCP(id string, inc uint64) (*transport.TCP, error) {
	cfg := transport.TCPConfig{
		ID: id, ListenAddr: c.addrs[id], Peers: c.peers[id], Cluster: c.cluster,
		Incarnation: inc, QueueBytes: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(c.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if inc == 0 {
		cfg.Listener = c.lns[id] // a restart listens on the same address again
	}
	tr, err := transport.NewTCP(cfg)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.trs[id] = tr
	c.mu.Unlock()
	return tr, nil
}

func (c *tcpCluster) restart(id string) (lamportmutex.Transport, error) {
	c.mu.Lock()
	old := c.trs[id]
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing is flushed
	if err := old.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return c.newTCP(id, old.Incarnation()+1)
}

func (c *tcpCluster) cut(on bool) func(a, b string) error {
	return func(a, b string) error {
		c.proxies[[2]string{a, b}].setCut(on)
		c.proxies[[2]string{b, a}].setCut(on)
		return nil
	}
}

// lockedBuffer is a bytes.Buffer that several goroutines may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proxy forwards every connection it accepts to one address, until cut:
// then it closes them and refuses new ones until healed.
type proxy struct {
	ln   net.Listener
	to   string
	wg   sync.WaitGroup
	mu   sync.Mutex
	cut  bool
	conn map[net.Conn]struct{}
}

func newProxy(t *testing.T, to string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: to, conn: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(in)
		}()
	}
}

// serve copies between in and a new connection to p.to until either ends.
func (p *proxy) serve(in net.Conn) {
	out, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = in.Close()
		return
	}
	if !p.track(in, out) {
		_ = in.Close()
		_ = out.Close()
		return
	}
	defer p.untrack(in, out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conn[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conn, c)
	}
}

func (p *proxy) setCut(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = on
	if on {
		for c := range p.conn {
			_ = c.Close()
		}
	}
}
