package transport

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// A peer that answers a restarted peer's PeerUp at once, from inside its
// deliver, reaches the new incarnation: Restart points every inbound link
// at the new incarnation before it announces it, so the answer cannot be
// dropped as if it were addressed to the dead one.
func TestRestartAnswerToPeerUpArrives(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ids := []string{"1", "2", "3"}
	n := newTestNetwork(t, ids, ChanOptions{})
	defer closeNet(t, n)
	for _, id := range []string{"1", "3"} {
		ep := endpoint(t, n, id)
		err := ep.Start(func(m lamportmutex.Message) { // answer every PeerUp of 2 at once
			if m.Kind == lamportmutex.PeerUp && m.From == "2" {
				if err := ep.Send(lamportmutex.Message{Kind: lamportmutex.Hello,
					From: ep.ID(), To: "2", Incarnation: m.Incarnation}); err != nil {
					t.Errorf("answer to %v: %v", m, err)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for range 500 {
		ep, err := n.Restart("2")
		if err != nil {
			t.Fatal(err)
		}
		heard := map[string]bool{}
		s := startSink(t, ep)
		for len(heard) < 2 {
			m := s.recv(t)
			if m.Kind == lamportmutex.Hello && m.Incarnation == ep.Incarnation() {
				heard[m.From] = true
			}
		}
	}
}
