package transport

import (
	"context"
	"testing"
)

// A peer that said goodbye has closed: it will never acknowledge what is
// sent to it now, so Flush does not wait for it (the message waits for the
// peer's next incarnation, as for any incarnation that ended). Close(ctx)
// of the last node of a group then returns without its ctx ending.
func TestTCPFlushDoesNotWaitForAPeerThatLeft(t *testing.T) {
	tcpLeakCheck(t)
	c := newTCPCluster(t, []string{"a", "b"}, nil)
	checkAlive(t, c, "a", "b", 1)
	if err := closeTCP(c.nodes["b"]); err != nil {
		t.Fatal(err)
	}
	a := c.nodes["a"]
	tcpEventually(t, func() bool { return peerStatus(a, "b").Left }, "a to see b leave")
	tcpSend(t, a, "b", 2, []byte("after b left"))
	ctx, cancel := context.WithTimeout(context.Background(), tcpPatience)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("Flush after b left: %v", err)
	}
}
