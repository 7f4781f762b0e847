package transport

import (
	"context"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// A peer that answers a restarted peer's PeerUp at once reaches the new
// incarnation: Restart points every inbound link at the new incarnation
// before it announces it, so the answer cannot be dropped as if it were
// addressed to the dead one.
func TestRestartAnswerToPeerUpArrives(t *testing.T) {
	ids := []string{"1", "2", "3"}
	n, err := NewChanNetwork(ids, ChanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, id := range []string{"1", "3"} {
		ep, err := n.Endpoint(id)
		if err != nil {
			t.Fatal(err)
		}
		go func() { // answer every PeerUp of 2 at once
			for m := range ep.Receive() {
				if m.Kind == lamportmutex.PeerUp && m.From == "2" {
					_ = ep.Send(context.Background(), lamportmutex.Message{Kind: lamportmutex.Hello,
						From: ep.ID(), To: "2", Incarnation: m.Incarnation})
				}
			}
		}()
	}
	if _, err := n.Endpoint("2"); err != nil {
		t.Fatal(err)
	}
	for round := range 500 {
		ep, err := n.Restart("2")
		if err != nil {
			t.Fatal(err)
		}
		heard := map[string]bool{}
		timeout := time.After(time.Minute) // only turns a hang into a failure
		for len(heard) < 2 {
			select {
			case m := <-ep.Receive():
				if m.Kind == lamportmutex.Hello && m.Incarnation == ep.Incarnation() {
					heard[m.From] = true
				}
			case <-timeout:
				t.Fatalf("restart %d: answers to PeerUp from %v only; the others were dropped", round, heard)
			}
		}
	}
}
