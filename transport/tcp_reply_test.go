package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// TestTCPReplyFromBlockedDeliver: a message that deliver sends to the peer
// it is delivering from goes out while that deliver blocks, with no
// heartbeat, pending ACK or later message to carry it (each round waits
// with Flush for the ACK of the previous one).
func TestTCPReplyFromBlockedDeliver(t *testing.T) {
	tcpLeakCheck(t)
	const rounds = 3
	gate := make(chan struct{})
	got := make(chan lamportmutex.Message, 4*rounds)
	var b atomic.Pointer[TCP]
	noBeat := func(cfg *TCPConfig) { cfg.HeartbeatInterval, cfg.IdleTimeout = time.Hour, 2*time.Hour }
	c := newTCPClusterDeliver(t, []string{"a", "b"}, noBeat, func(id string) func(lamportmutex.Message) {
		if id == "a" {
			return func(m lamportmutex.Message) { got <- m }
		}
		return func(m lamportmutex.Message) {
			if m.Kind != lamportmutex.Request {
				return
			}
			if err := b.Load().Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: "b", To: "a", Clock: m.Clock}); err != nil {
				t.Errorf("Send from deliver: %v", err)
			}
			<-gate // until a has the REPLY
		}
	})
	t.Cleanup(func() { close(gate) }) // before the cluster closes: Close waits for deliver
	b.Store(c.nodes["b"])
	a := c.nodes["a"]
	recv := func() lamportmutex.Message {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(tcpPatience):
			t.Fatal("a: nothing received")
		}
		return lamportmutex.Message{}
	}
	if m := recv(); m.Kind != lamportmutex.PeerUp {
		t.Fatalf("a got %v first, want PeerUp", m)
	}
	for clock := uint64(1); clock <= rounds; clock++ {
		if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: clock}); err != nil {
			t.Fatal(err)
		}
		if m := recv(); m.Kind != lamportmutex.Reply || m.Clock != clock {
			t.Fatalf("a got %v, want the REPLY with clock %d while b's deliver blocks", m, clock)
		}
		gate <- struct{}{}
		ctx, cancel := context.WithTimeout(context.Background(), tcpPatience)
		err := a.Flush(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}
