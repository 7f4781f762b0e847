package transport

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// TestChanQuarantine: the in-memory network keeps the same contract.
func TestChanQuarantine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	n := newTestNetwork(t, []string{"a", "b"}, ChanOptions{})
	defer n.Close()
	ea, eb := endpoint(t, n, "a"), endpoint(t, n, "b")
	expectPeerUps(t, ea, "b")
	expectPeerUps(t, eb, "a")
	ctx := context.Background()
	send := func(e *ChanEndpoint, to string, clock uint64) {
		t.Helper()
		if err := e.Send(ctx, lamportmutex.Message{Kind: lamportmutex.Reply, From: e.ID(), To: to, Clock: clock}); err != nil {
			t.Fatal(err)
		}
	}
	// Not yet received by a: 1 may already be on its way to Receive (the
	// one message Quarantine cannot recall), 2 waits behind it in a's inbox.
	send(eb, "a", 1)
	send(eb, "a", 2)
	ea.Quarantine("b", eb.Incarnation(), errors.New("bad head"))
	send(eb, "a", 3)  // dropped as on a closed connection
	send(ea, "b", 10) // held for b's quarantined incarnation; Restart drops it
	eb2, err := n.Restart("b")
	if err != nil {
		t.Fatal(err)
	}
	send(eb2, "a", 4)
	m := recv(t, ea)
	if m.Kind != lamportmutex.PeerUp && m.Clock == 1 {
		m = recv(t, ea)
	}
	if m.Kind != lamportmutex.PeerUp || m.From != "b" || m.Incarnation != 2 {
		t.Fatalf("a got %v, want PeerUp of b#2 (after at most the message in flight)", m)
	}
	if m := recv(t, ea); m.From != "b" || m.Clock != 4 {
		t.Fatalf("a got %v, want the new incarnation's message", m)
	}
	expectPeerUps(t, eb2, "a")
	send(ea, "b", 11)
	if m := recv(t, eb2); m.From != "a" || m.Clock != 11 {
		t.Fatalf("new b got %v, want a's message sent after the restart", m)
	}
}
