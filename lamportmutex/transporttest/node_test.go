package transporttest

import (
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// named is a transport that only has an identity: enough for newNode.
type named struct {
	lamportmutex.Transport
	id  string
	inc uint64
}

func (n named) ID() string          { return n.id }
func (n named) Incarnation() uint64 { return n.inc }

// TestHookSetDuringDeliverSkipsIt: a hook set while a deliver call is under
// way, its message about to be recorded (so a waitFor may already have seen
// it), does not run for that call, and runs for the next one. Subtests set
// their hooks once waitUp has seen every PeerUp; a blocking hook run for a
// PeerUp still under way would hold that peer's reader, and the subtest
// would wait for the peer's first message in vain.
func TestHookSetDuringDeliverSkipsIt(t *testing.T) {
	s := &suite{t: t, ids: []string{"p1", "p2"}, nodes: make(map[string]*node), streams: make(map[uint64]*stream), changed: make(chan struct{})}
	n := s.newNode(named{id: "p2", inc: 1})
	pl := n.peers["p1"]

	pl.mu.Lock() // holds the call below before it records
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.deliver(lamportmutex.Message{Kind: lamportmutex.PeerUp, From: "p1", To: "p2", Incarnation: 1})
	}()
	for pl.inflight.Load() == 0 { // the call has begun
		runtime.Gosched()
	}
	var ran atomic.Int32
	n.onDeliver(func(lamportmutex.Message) { ran.Add(1) })
	pl.mu.Unlock()
	<-done
	if ran.Load() != 0 {
		t.Fatal("a hook set while deliver(PeerUp) was under way ran for it")
	}

	n.deliver(lamportmutex.Message{Kind: lamportmutex.PeerDown, From: "p1", To: "p2", Incarnation: 1})
	if ran.Load() != 1 {
		t.Fatalf("the hook ran %d times for a deliver call made after it was set, want 1", ran.Load())
	}
	if len(s.violations) > 0 {
		t.Fatalf("violations: %v", s.violations)
	}
}
