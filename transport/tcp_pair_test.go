package transport

import (
	"bufio"
	"maps"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// TestTCPOneConnectionPerPair: three peers that talk every way hold one
// connection per pair: two each, each up both ways.
func TestTCPOneConnectionPerPair(t *testing.T) {
	tcpLeakCheck(t)
	ids := []string{"a", "b", "c"}
	c := newTCPCluster(t, ids, nil)
	for i, x := range ids {
		for _, y := range ids[i+1:] {
			checkAlive(t, c, x, y, 1)
			checkAlive(t, c, y, x, 2)
		}
	}
	for _, id := range ids {
		tr := c.nodes[id]
		// A kick (a connection that ends at once) may still be under way.
		tcpEventually(t, func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return len(tr.conns) == len(ids)-1
		}, "%s to hold one connection per peer", id)
		for _, st := range tr.Status() {
			if !st.Connected || !st.Inbound || st.Reconnects != 0 {
				t.Errorf("%s: status of %s: %+v", id, st.ID, st)
			}
		}
	}
}

// rawAcceptor is a hand-driven peer "z", the higher id of its pair with
// "a": it accepts a's connection and speaks the wire format directly.
type rawAcceptor struct {
	ln   net.Listener
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// accept takes a's next connection, answers its hello with resume and
// returns the RESUME a sends.
func (z *rawAcceptor) accept(t *testing.T, resume uint64) uint64 {
	t.Helper()
	conn, err := z.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(tcpPatience)); err != nil {
		t.Fatal(err)
	}
	z.conn, z.br, z.bw = conn, bufio.NewReader(conn), bufio.NewWriter(conn)
	check := helloCheck{version: protocolVersion, self: "z", cluster: "test-cluster", known: func(id string) bool { return id == "a" }}
	if _, _, err := readHello(z.br, check); err != nil {
		t.Fatal(err)
	}
	if err := writeWelcome(z.bw, protocolVersion, welcome{From: "z", Incarnation: 1, Resume: resume}); err != nil {
		t.Fatal(err)
	}
	body, err := readFrame(z.br, seqFrameSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := parseResumeFrame(body)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// next reads a's next frame, skipping ACKs below minAck (heartbeats).
func (z *rawAcceptor) next(t *testing.T, minAck uint64) (typ byte, seq uint64, m lamportmutex.Message) {
	t.Helper()
	for {
		body, err := readFrame(z.br, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		typ, seq, rest, err := parseStreamFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if typ == frameAck && seq < minAck {
			continue
		}
		if typ == frameData {
			if m, err = unmarshalMessage(rest); err != nil {
				t.Fatal(err)
			}
		}
		return typ, seq, m
	}
}

// TestTCPReplyOnRequestConnection: the REPLY that a's deliver sends for
// a REQUEST goes back on the connection that brought the REQUEST, and so
// does an ACK of that REQUEST; and after a reconnect each side resends
// from what the other said it delivered (the welcome's resume, the
// dialer's RESUME).
func TestTCPReplyOnRequestConnection(t *testing.T) {
	tcpLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var a atomic.Pointer[TCP]
	c := newTCPClusterDeliver(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = maps.Clone(cfg.Peers)
		cfg.Peers["z"] = ln.Addr().String()
	}, func(string) func(lamportmutex.Message) {
		return func(m lamportmutex.Message) {
			if m.Kind == lamportmutex.Request {
				if err := a.Load().Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "a", To: "z", Clock: m.Clock + 1}); err != nil {
					t.Error(err)
				}
			}
		}
	})
	a.Store(c.nodes["a"])
	z := &rawAcceptor{ln: ln}
	if got := z.accept(t, 0); got != 0 {
		t.Fatalf("a's first RESUME: %d, want 0", got)
	}
	req := mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "z", To: "a", Clock: 5})
	if _, err := z.bw.Write(appendSeqFrame(nil, frameData, 1, req)); err != nil {
		t.Fatal(err)
	}
	if err := z.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	// The REPLY leaves from inside deliver, the ACK once deliver returned:
	// usually in that order, but the writer may put the ACK in front.
	for replied, ackedReq := false, false; !replied || !ackedReq; {
		switch typ, seq, m := z.next(t, 1); {
		case typ == frameAck && seq == 1: // or its repetition, the heartbeat
			ackedReq = true
		case typ == frameData && seq == 1 && m.Kind == lamportmutex.Reply && m.Clock == 6 && !replied:
			replied = true
		default:
			t.Fatalf("after the REQUEST a sent type %d seq %d %v; want DATA 1, the REPLY, and the ACK of 1", typ, seq, m)
		}
	}

	// z lost the REPLY: it reconnects saying it delivered nothing, and a,
	// which delivered the REQUEST, says so in its RESUME and resends.
	z.conn.Close()
	if got := z.accept(t, 0); got != 1 {
		t.Fatalf("a's RESUME after the reconnect: %d, want 1", got)
	}
	if typ, seq, m := z.next(t, 2); typ != frameData || seq != 1 || m.Kind != lamportmutex.Reply {
		t.Fatalf("after the reconnect: type %d seq %d %v, want the REPLY again", typ, seq, m)
	}
	// A resent REQUEST is a duplicate: dropped, no second REPLY.
	tcpSend(t, a.Load(), "z", 9, nil)
	if _, err := z.bw.Write(appendSeqFrame(nil, frameData, 1, req)); err != nil {
		t.Fatal(err)
	}
	if err := z.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if typ, seq, m := z.next(t, 2); typ != frameData || seq != 2 || m.Clock != 9 {
		t.Fatalf("type %d seq %d %v, want DATA 2 with clock 9 and no second REPLY", typ, seq, m)
	}
}

// TestTCPResumeFromDialer: the acceptor resends what follows the dialer's
// RESUME, and closes on a RESUME of something it never sent.
func TestTCPResumeFromDialer(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"a": cfg.Peers["a"], "M": "127.0.0.1:1"}
	})
	a := c.nodes["a"]
	for clock := uint64(1); clock <= 3; clock++ {
		tcpSend(t, a, "M", clock, nil) // held until M dials
	}
	h := hello{From: "M", To: "a", Cluster: "test-cluster", Incarnation: 1}
	readData := func(r *rawPeer, want ...uint64) {
		t.Helper()
		for _, w := range want {
			for {
				body, err := readFrame(r.br, 1<<20, nil)
				if err != nil {
					t.Fatal(err)
				}
				typ, seq, rest, err := parseStreamFrame(body)
				if err != nil {
					t.Fatal(err)
				}
				if typ != frameData {
					continue
				}
				m, err := unmarshalMessage(rest)
				if err != nil || seq != w || m.Clock != w {
					t.Fatalf("DATA %d %v (%v), want seq and clock %d", seq, m, err, w)
				}
				break
			}
		}
	}
	r := rawDial(t, c.addrs["a"])
	r.handshake(t, h) // RESUME 0
	readData(r, 1, 2, 3)
	r.conn.Close()

	r = rawDial(t, c.addrs["a"])
	r.handshakeResume(t, h, 2)
	readData(r, 3)
	r.conn.Close()

	r = rawDial(t, c.addrs["a"])
	r.handshakeResume(t, h, 9)
	r.waitClosed(t)
	c.waitErr("a", ErrProtocol, `peer "M" resumes after 9, but we hold 3..3`)
}

// handshakeResume is handshake with RESUME resume.
func (r *rawPeer) handshakeResume(t *testing.T, h hello, resume uint64) {
	t.Helper()
	if err := writeHello(r.bw, protocolVersion, h); err != nil {
		t.Fatal(err)
	}
	if _, err := readWelcome(r.br, protocolVersion, h.To); err != nil {
		t.Fatal(err)
	}
	if err := writeResume(r.bw, resume); err != nil {
		t.Fatal(err)
	}
}
