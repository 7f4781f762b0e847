package transport

import (
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// TestTCPAcksCoalesced: a burst of messages ending in a PING (an ACK
// request) is acknowledged up to its last message, cumulatively, with far
// fewer ACKs than messages; every message is delivered once, in order.
func TestTCPAcksCoalesced(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a"}, func(cfg *TCPConfig) {
		cfg.Peers = map[string]string{"a": cfg.Peers["a"], "M": "127.0.0.1:1"}
	})
	r := rawDial(t, c.addrs["a"])
	r.handshake(t, hello{From: "M", To: "a", Cluster: "test-cluster", Incarnation: 1})
	const n = 200
	for seq := uint64(1); seq <= n; seq++ {
		msg := mustMarshal(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "M", To: "a", Clock: seq})
		if err := writeSeqFrame(r.bw, frameData, seq, msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := writePing(r.bw); err != nil {
		t.Fatal(err)
	}
	if err := r.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	acks, last := 0, uint64(0)
	for last < n {
		body, err := readFrame(r.br, seqFrameSize, nil)
		if err != nil {
			t.Fatalf("after %d ACKs up to %d: %v", acks, last, err)
		}
		typ, seq, rest, err := parseSeqFrame(body)
		if err != nil || typ != frameAck || len(rest) != 0 || seq < last || seq > n {
			t.Fatalf("frame %x after ACK %d: %v", body, last, err)
		}
		acks++
		last = seq
	}
	if acks > n/4 {
		t.Errorf("%d ACKs for %d messages: not coalesced", acks, n)
	}
	for want := uint64(1); want <= n; want++ {
		if m := tcpRecvData(t, c.nodes["a"]); m.From != "M" || m.Clock != want {
			t.Fatalf("got %v, want clock %d from m", m, want)
		}
	}
}
