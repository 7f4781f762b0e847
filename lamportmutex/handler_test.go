package lamportmutex

import (
	"slices"
	"testing"
)

// funcHandler is a Handler made of funcs, for tests; a nil func accepts
// and does nothing.
type funcHandler struct {
	release, message func(from string, payload []byte) error
	up, down         func(peer string)
}

func (h funcHandler) HandleRelease(from string, payload []byte) error {
	if h.release == nil {
		return nil
	}
	return h.release(from, payload)
}

func (h funcHandler) HandleMessage(from string, payload []byte) error {
	if h.message == nil {
		return nil
	}
	return h.message(from, payload)
}

func (h funcHandler) HandlePeerUp(peer string) {
	if h.up != nil {
		h.up(peer)
	}
}

func (h funcHandler) HandlePeerDown(peer string) {
	if h.down != nil {
		h.down(peer)
	}
}

// HandlePeerDown hears of a lost connection in the order of the pair's
// stream, and the peer's messages keep coming to its incarnation after it:
// a PeerDown is news, not a restart.
func TestHandlePeerDown(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, log := newLoggedMutex(t, ft, []string{"1", "2"})
	ft.syncWith(t, mu, []string{"2"}, 1)
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("a"), Incarnation: 1})
	ft.feed(Message{Kind: PeerDown, From: "2", To: "1", Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("b"), Incarnation: 1})
	want := []string{"up 2", "message 2 a", "down 2", "message 2 b"}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("Handler calls = %q, want %q", got, want)
	}
	if n := mu.Stats().Received[PeerDown]; n != 1 {
		t.Errorf("Stats.Received[PEERDOWN] = %d, want 1", n)
	}
}

// A Mutex with no Handler accepts every payload: a release with one takes
// effect, and DATA and PeerDown are counted and dropped.
func TestNilHandler(t *testing.T) {
	mu, ft := newPairMutex(t)
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 5, Incarnation: 1})
	if st := barrier(t, mu); len(st.Queue) != 1 {
		t.Fatalf("queue %v, want 2's request", st.Queue)
	}
	ft.feed(Message{Kind: Release, From: "2", To: "1", Clock: 7, Payload: []byte("update"), Incarnation: 1})
	ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("a"), Incarnation: 1})
	ft.feed(Message{Kind: PeerDown, From: "2", To: "1", Incarnation: 1})
	if st := barrier(t, mu); len(st.Queue) != 0 {
		t.Errorf("queue %v after 2's release, want it empty", st.Queue)
	}
	s := mu.Stats()
	if s.Received[Release] != 1 || s.Received[Data] != 1 || s.Received[PeerDown] != 1 || s.HandlerErrors != 0 || s.Quarantined != 0 {
		t.Errorf("Stats %+v, want one RELEASE, DATA and PEERDOWN received, no handler error or quarantine", s)
	}
}
