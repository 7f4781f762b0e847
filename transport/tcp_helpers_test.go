package transport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// tcpPatience bounds every wait of these tests. It is generous: it only
// turns a hang into a failure, and no test asserts a duration.
const tcpPatience = 60 * time.Second

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hasLine reports whether one log line contains every one of subs.
func (l *logBuf) hasLine(subs ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok && line != "" {
			return true
		}
	}
	return false
}

// waitLog waits until a log line contains every one of subs.
func waitLog(t *testing.T, l *logBuf, subs ...string) {
	t.Helper()
	tcpEventually(t, func() bool { return l.hasLine(subs...) }, "log line with %q; log:\n%s", subs, l)
}

// tcpEventually polls cond until it holds, failing after tcpPatience.
func tcpEventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(tcpPatience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for "+format, args...)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// tcpCluster is a set of TCP transports on loopback.
type tcpCluster struct {
	t     testing.TB
	addrs map[string]string
	nodes map[string]*TCP
	logs  map[string]*logBuf
	errs  map[string]*errRec
	mod   func(*TCPConfig)
	// deliverFor, if set, gives the deliver function of each id; the
	// default delivers to an inbox (see tcpInbox).
	deliverFor func(id string) func(lamportmutex.Message)
}

// errRec records the connection errors a transport reported.
type errRec struct {
	mu   sync.Mutex
	errs []error
}

func (r *errRec) add(_ string, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// find returns the first recorded error that is target (any if nil) and whose text
// contains every one of subs.
func (r *errRec) find(target error, subs ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		if target != nil && !errors.Is(err, target) {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(err.Error(), s)
		}
		if ok {
			return err
		}
	}
	return nil
}

// waitErr waits until id reported an error that is target and names subs.
func (c *tcpCluster) waitErr(id string, target error, subs ...string) error {
	c.t.Helper()
	var err error
	tcpEventually(c.t, func() bool { err = c.errs[id].find(target, subs...); return err != nil },
		"%s to report %v naming %q; log:\n%s", id, target, subs, c.logs[id])
	return err
}

// newTCPCluster starts one transport per id on free loopback ports. mod,
// if not nil, adjusts each config.
func newTCPCluster(t testing.TB, ids []string, mod func(*TCPConfig)) *tcpCluster {
	t.Helper()
	return newTCPClusterDeliver(t, ids, mod, nil)
}

// newTCPClusterDeliver is newTCPCluster with id's transport delivering to
// deliverFor(id) (to an inbox if deliverFor is nil).
func newTCPClusterDeliver(t testing.TB, ids []string, mod func(*TCPConfig), deliverFor func(id string) func(lamportmutex.Message)) *tcpCluster {
	t.Helper()
	c := &tcpCluster{t: t, addrs: map[string]string{}, nodes: map[string]*TCP{}, logs: map[string]*logBuf{}, errs: map[string]*errRec{}, mod: mod, deliverFor: deliverFor}
	lns := map[string]net.Listener{}
	for _, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
		c.addrs[id] = ln.Addr().String()
	}
	for _, id := range ids {
		c.start(id, lns[id], 0)
	}
	t.Cleanup(c.closeAll)
	return c
}

// config returns the test configuration of id.
func (c *tcpCluster) config(id string, ln net.Listener, inc uint64) TCPConfig {
	l := &logBuf{}
	c.logs[id] = l
	r := &errRec{}
	c.errs[id] = r
	cfg := TCPConfig{
		ID:          id,
		Listener:    ln,
		Peers:       c.addrs,
		Cluster:     "test-cluster",
		Logger:      slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BackoffMin:  time.Millisecond,
		BackoffMax:  20 * time.Millisecond,
		Incarnation: inc,
		onConnError: r.add,
	}
	if ln == nil {
		cfg.ListenAddr = c.addrs[id]
	}
	if c.mod != nil {
		c.mod(&cfg)
	}
	return cfg
}

// start starts id, on ln or else on its address, delivering to an inbox
// (see tcpInbox).
func (c *tcpCluster) start(id string, ln net.Listener, inc uint64) *TCP {
	c.t.Helper()
	tr, err := NewTCP(c.config(id, ln, inc))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.deliverFor != nil {
		if err := tr.Start(c.deliverFor(id)); err != nil {
			c.t.Fatal(err)
		}
	} else {
		startTCPInbox(c.t, tr)
	}
	c.nodes[id] = tr
	return tr
}

func (c *tcpCluster) closeAll() {
	for _, n := range c.nodes {
		if err := closeTCP(n); err != nil {
			c.t.Error(err)
		}
	}
}

// closeFlushWait bounds the flush of a test's Close: a peer that is down
// keeps its messages unacknowledged, and Close waits for them until its
// ctx ends. It is no assertion, only how long a cleanup may take.
const closeFlushWait = 200 * time.Millisecond

// closeTCP closes tr's inbox, so that a reader blocked on a full one
// returns, then tr, flushing for at most closeFlushWait; a flush cut
// short is no error here.
func closeTCP(tr *TCP) error {
	if in, ok := tcpInboxes.Load(tr); ok {
		in.(*tcpInbox).close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeFlushWait)
	defer cancel()
	err := tr.Close(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// tcpInbox is what a transport of these tests delivers to: a channel,
// read by tcpRecv. deliver blocks while it is full, as a slow application
// would, until the inbox is closed. PeerDown, which is informational, is
// kept apart (see downs), so that tests of the streams see only PeerUp and
// messages; TestTCPPeerDown checks PeerDown in stream order.
type tcpInbox struct {
	ch   chan lamportmutex.Message
	quit chan struct{}
	once sync.Once

	mu    sync.Mutex
	downs []lamportmutex.Message
}

func (in *tcpInbox) deliver(m lamportmutex.Message) {
	if m.Kind == lamportmutex.PeerDown {
		in.mu.Lock()
		in.downs = append(in.downs, m)
		in.mu.Unlock()
		return
	}
	select {
	case in.ch <- m:
	case <-in.quit:
	}
}

func (in *tcpInbox) close() { in.once.Do(func() { close(in.quit) }) }

// tcpInboxes maps each started *TCP to its *tcpInbox.
var tcpInboxes sync.Map

// tcpInboxSize is the capacity of a test inbox.
const tcpInboxSize = 4096

// startTCPInbox starts tr delivering to a new inbox of tcpInboxSize.
func startTCPInbox(t testing.TB, tr *TCP) *tcpInbox {
	return startTCPInboxSize(t, tr, tcpInboxSize)
}

func startTCPInboxSize(t testing.TB, tr *TCP, size int) *tcpInbox {
	t.Helper()
	in := &tcpInbox{ch: make(chan lamportmutex.Message, size), quit: make(chan struct{})}
	tcpInboxes.Store(tr, in)
	t.Cleanup(func() { tcpInboxes.Delete(tr) })
	if err := tr.Start(in.deliver); err != nil {
		t.Fatal(err)
	}
	return in
}

// tcpInboxCh returns the channel tr delivers to.
func tcpInboxCh(t testing.TB, tr *TCP) <-chan lamportmutex.Message {
	t.Helper()
	in, ok := tcpInboxes.Load(tr)
	if !ok {
		t.Fatalf("%s has no inbox", tr.ID())
	}
	return in.(*tcpInbox).ch
}

// tcpRecv receives one message from tr's inbox.
func tcpRecv(t *testing.T, tr *TCP) lamportmutex.Message {
	t.Helper()
	select {
	case m := <-tcpInboxCh(t, tr):
		return m
	case <-time.After(tcpPatience):
		t.Fatalf("%s: nothing received", tr.ID())
	}
	return lamportmutex.Message{}
}

// tcpSend sends a REPLY with clock and payload.
func tcpSend(t *testing.T, tr *TCP, to string, clock uint64, payload []byte) {
	t.Helper()
	if err := tr.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: tr.ID(), To: to, Clock: clock, Payload: payload}); err != nil {
		t.Fatalf("send %s->%s: %v", tr.ID(), to, err)
	}
}

// peerStatus returns tr's status of id.
func peerStatus(tr *TCP, id string) PeerStatus {
	for _, s := range tr.Status() {
		if s.ID == id {
			return s
		}
	}
	return PeerStatus{}
}

// tcpLeakCheck verifies, after every cleanup registered later has run,
// that no goroutine leaked.
func tcpLeakCheck(t testing.TB) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}
