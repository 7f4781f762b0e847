package transport

import (
	"bufio"
	"errors"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// rawPeer is a hand-driven dialer speaking the wire format directly. Its
// id must be below the id it dials: the lower id of a pair dials.
type rawPeer struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

func rawDial(t *testing.T, addr string) *rawPeer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(tcpPatience)); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{conn: conn, br: bufio.NewReader(conn), bw: bufio.NewWriter(conn)}
}

// handshake performs the dialer's half of the handshake, requires
// acceptance, and sends RESUME 0: the raw peer delivered nothing.
func (r *rawPeer) handshake(t *testing.T, h hello) welcome {
	t.Helper()
	if err := writeHello(r.bw, protocolVersion, h); err != nil {
		t.Fatal(err)
	}
	wl, err := readWelcome(r.br, protocolVersion, h.To)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeResume(r.bw, 0); err != nil {
		t.Fatal(err)
	}
	return wl
}

func (r *rawPeer) data(t *testing.T, seq uint64, msg []byte) {
	t.Helper()
	if err := writeSeqFrame(r.bw, frameData, seq, msg); err != nil {
		t.Fatal(err)
	}
	if err := r.bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitClosed reads until the other side closes the connection.
func (r *rawPeer) waitClosed(t *testing.T) {
	t.Helper()
	var buf [512]byte
	for {
		if _, err := r.conn.Read(buf[:]); err != nil {
			if isTimeout(err) {
				t.Fatal("connection not closed")
			}
			return
		}
	}
}

func mustMarshal(t *testing.T, m lamportmutex.Message) []byte {
	t.Helper()
	b, err := marshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTCPBadStreams feeds a transport garbage, oversized and malformed
// frames, sequence gaps, forgeries and silence: each closes that connection
// with an error naming the cause, without a panic, while other peers keep
// working.
func TestTCPBadStreams(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "c"}, func(cfg *TCPConfig) {
		cfg.Peers = maps.Clone(cfg.Peers)
		cfg.Peers["M"] = "127.0.0.1:1" // M exists only as the raw dialer below
		cfg.MaxFrameSize = 1024
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.IdleTimeout = 2 * time.Second
	})
	addr := c.addrs["a"]
	inc := uint64(0)
	h := func() hello {
		inc++
		return hello{From: "M", To: "a", Cluster: "test-cluster", Incarnation: inc}
	}
	valid := func(seq uint64) []byte {
		return mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "M", To: "a", Clock: seq})
	}
	for i, tc := range []struct {
		name   string
		feed   func(t *testing.T, r *rawPeer)
		target error
		text   string
	}{
		{"garbage", func(t *testing.T, r *rawPeer) {
			r.bw.WriteString("GET / HTTP/1.1\r\n\r\n")
			r.bw.Flush()
		}, ErrBadMagic, `bad magic "GET "`},
		{"oversized frame", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
			r.bw.Write([]byte{0, 0, 4, 1}) // 1025 bytes announced, none sent
			r.bw.Flush()
		}, ErrFrameTooLarge, `1025 bytes, limit 1024`},
		{"oversized hello", func(t *testing.T, r *rawPeer) {
			writePreamble(r.bw, protocolVersion)
			r.bw.Write([]byte{0xff, 0xff, 0xff, 0xff})
			r.bw.Flush()
		}, ErrFrameTooLarge, `4294967295 bytes, limit 8192`},
		{"malformed msgpack", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
			r.data(t, 1, []byte{0xc1, 0x00})
		}, ErrMalformed, `message 1 from "M"`},
		{"unknown frame type", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
			r.bw.Write([]byte{0, 0, 0, 9, 7, 0, 0, 0, 0, 0, 0, 0, 1})
			r.bw.Flush()
		}, ErrProtocol, `frame type 7 from "M"`},
		{"sequence gap", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
			r.data(t, 5, valid(5))
		}, ErrProtocol, `"M" sent seq 5 after 0`},
		{"forged sender", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
			r.data(t, 1, mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Release, From: "c", To: "a", Clock: 1}))
		}, ErrProtocol, `stream from "M" carried c->a RELEASE@1`},
		{"half-open", func(t *testing.T, r *rawPeer) {
			r.handshake(t, h())
		}, ErrIdle, `nothing from "M" for 2s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, addr)
			tc.feed(t, r)
			r.waitClosed(t)
			c.waitErr("a", tc.target, tc.text)
			checkAlive(t, c, "a", "c", uint64(i+1))
		})
	}
	waitLog(t, c.logs["a"], "connection closed", "peer=M", "level=WARN", "half-open")

	t.Run("duplicates dropped", func(t *testing.T) {
		r := rawDial(t, addr)
		r.handshake(t, h())
		r.data(t, 1, valid(1))
		r.data(t, 1, valid(1))
		r.data(t, 2, valid(2))
		for want := uint64(1); want <= 2; want++ {
			if m := tcpRecvData(t, c.nodes["a"]); m.From != "M" || m.Clock != want {
				t.Fatalf("got %v, want clock %d from m", m, want)
			}
		}
		r.conn.Close()
		// A reconnect of the same incarnation resumes after 2.
		r = rawDial(t, addr)
		inc--
		if wl := r.handshake(t, h()); wl.Resume != 2 || wl.From != "a" || wl.Incarnation != c.nodes["a"].Incarnation() {
			t.Fatalf("welcome %+v, want resume 2", wl)
		}
		r.data(t, 2, valid(2))
		r.data(t, 3, valid(3))
		if m := tcpRecvData(t, c.nodes["a"]); m.From != "M" || m.Clock != 3 {
			t.Fatalf("got %v, want clock 3 from m", m)
		}
	})
}

// TestTCPSlowReader: a peer that accepts but never reads gets its
// connection closed once writes block for WriteTimeout; others keep working.
func TestTCPSlowReader(t *testing.T) {
	tcpLeakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() { // the slow peer s: shakes hands, then never reads
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			br, bw := bufio.NewReader(conn), bufio.NewWriter(conn)
			check := helloCheck{version: protocolVersion, self: "s", cluster: "test-cluster", known: func(string) bool { return true }}
			if _, _, err := readHello(br, check); err != nil {
				continue
			}
			_ = writeWelcome(bw, protocolVersion, welcome{From: "s", Incarnation: 1})
		}
	}()
	defer func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c := newTCPCluster(t, []string{"a", "c"}, func(cfg *TCPConfig) {
		cfg.Peers = maps.Clone(cfg.Peers)
		cfg.Peers["s"] = ln.Addr().String()
		cfg.WriteTimeout = 200 * time.Millisecond
		cfg.MaxFrameSize = 1 << 20
		cfg.QueueBytes = 64 << 20
	})
	a := c.nodes["a"]
	for i := range 64 { // 32 MiB: more than the socket buffers hold
		tcpSend(t, a, "s", uint64(i+1), make([]byte, 512<<10))
	}
	err = c.waitErr("a", ErrSlowPeer, `writing to "s" blocked for 200ms`)
	if !errors.Is(err, ErrSlowPeer) {
		t.Fatal(err)
	}
	waitLog(t, c.logs["a"], "connection closed", "peer=s", "slow reader")
	checkAlive(t, c, "a", "c", 1)
	if st := peerStatus(a, "s"); st.Queued != 64 {
		t.Errorf("unacknowledged messages to s: %+v", st)
	}
}
