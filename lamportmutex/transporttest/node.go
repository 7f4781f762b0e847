package transporttest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// node is one incarnation of a peer: its transport and what its deliver
// calls received.
type node struct {
	s   *suite
	id  string
	tr  lamportmutex.Transport
	inc uint64

	hook          atomic.Pointer[func(lamportmutex.Message)]
	started       atomic.Bool
	closeReturned atomic.Bool
	crashed       atomic.Bool

	peers map[string]*peerLog // by sender id; fixed at creation
}

// peerLog is what one node received from one peer.
type peerLog struct {
	inflight atomic.Int32

	mu         sync.Mutex
	ups        []uint64 // PeerUp incarnations, in order
	upsChecked int      // how many of ups checkUps has checked
	downs      int
	msgs       []lamportmutex.Message // every other message, in order
	last       map[uint64]uint64      // last seq delivered, by stream id
	quarantine uint64                 // the incarnation quarantined, 0 if none
	afterQuar  int                    // messages of it delivered after
}

func (s *suite) newNode(tr lamportmutex.Transport) *node {
	n := &node{s: s, id: tr.ID(), tr: tr, inc: tr.Incarnation(), peers: make(map[string]*peerLog)}
	for _, id := range s.ids {
		if id != n.id {
			n.peers[id] = &peerLog{last: make(map[uint64]uint64)}
		}
	}
	s.mu.Lock()
	s.all = append(s.all, n)
	s.mu.Unlock()
	return n
}

// start starts n's transport with the recording deliver.
func (n *node) start() {
	n.s.t.Helper()
	if err := n.tr.Start(n.deliver); err != nil {
		n.s.t.Fatalf("%s: Start: %v", n.id, err)
	}
	n.started.Store(true)
}

// onDeliver sets the function that every deliver call of n starting after
// it runs after recording its message (nil: none). A call already under
// way keeps the function it began with, so a hook set once waitUp returns
// never runs for a PeerUp that waitUp saw recorded.
func (n *node) onDeliver(f func(lamportmutex.Message)) {
	if f == nil {
		n.hook.Store(nil)
		return
	}
	n.hook.Store(&f)
}

// closeWithin closes n's transport with a ctx that ends after flush, and
// fails if Close has not returned patience after that.
func (n *node) closeWithin(flush, patience time.Duration) error {
	if n.closeReturned.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), flush)
	defer cancel()
	done := async(func() error { return n.tr.Close(ctx) })
	timer := time.NewTimer(flush + patience)
	defer timer.Stop()
	select {
	case err := <-done:
		n.closeReturned.Store(true)
		return err
	case <-timer.C:
		return fmt.Errorf("hung for %v after its ctx ended", patience)
	}
}

// deliver is the function the suite starts every transport with. It
// checks what a single call can show, records the message and runs the
// subtest's hook, as set when the call began.
func (n *node) deliver(m lamportmutex.Message) {
	hook := n.hook.Load() // before anything is recorded: see onDeliver
	s := n.s
	pl := n.peers[m.From]
	if pl == nil {
		s.violate("%s: deliver(%s): From %q is no other member", n.id, describe(m), m.From)
		return
	}
	if c := pl.inflight.Add(1); c > 1 {
		s.violate("%s: deliver(%s): %d deliver calls for peer %s run at once", n.id, describe(m), c, m.From)
	}
	defer pl.inflight.Add(-1)
	if n.closeReturned.Load() {
		s.violate("%s: deliver(%s) called after Close returned", n.id, describe(m))
	}
	defer func() {
		if n.closeReturned.Load() {
			s.violate("%s: deliver(%s) still running when Close returned", n.id, describe(m))
		}
	}()
	if m.To != n.id {
		s.violate("%s: deliver(%s): To is %q", n.id, describe(m), m.To)
	}
	n.record(pl, m)
	s.wake()
	if hook != nil {
		(*hook)(m)
	}
}

// record checks m against what pl received before and appends it.
func (n *node) record(pl *peerLog, m lamportmutex.Message) {
	s := n.s
	pl.mu.Lock()
	defer pl.mu.Unlock()
	up := uint64(0)
	if len(pl.ups) > 0 {
		up = pl.ups[len(pl.ups)-1]
	}
	switch m.Kind {
	case lamportmutex.PeerUp:
		switch {
		case m.Incarnation == 0:
			s.violate("%s: PeerUp from %s with incarnation 0", n.id, m.From)
		case m.Incarnation == up:
			s.violate("%s: a second PeerUp from %s for incarnation %d", n.id, m.From, up)
		case m.Incarnation < up:
			s.violate("%s: PeerUp from %s for incarnation %d after %d", n.id, m.From, m.Incarnation, up)
		}
		pl.ups = append(pl.ups, m.Incarnation)
		return
	case lamportmutex.PeerDown:
		if up == 0 {
			s.violate("%s: PeerDown from %s before any PeerUp of it", n.id, m.From)
		}
		pl.downs++
		return
	}
	st := s.streamOf(m.Clock)
	if st == nil {
		s.violate("%s: delivered %s, which no Send accepted", n.id, describe(m))
		return
	}
	if st.from.id != m.From || st.to != n.id {
		s.violate("%s: delivered %s, which %s sent to %s", n.id, describe(m), st.from.id, st.to)
		return
	}
	if !st.wellFormed(m) {
		s.violate("%s: delivered %s altered (kind, payload or Incarnation not as sent)", n.id, describe(m))
	}
	switch {
	case up == 0:
		s.violate("%s: %s delivered before any PeerUp of %s", n.id, describe(m), m.From)
	case st.from.inc < up:
		s.violate("%s: %s of incarnation %d delivered after PeerUp of incarnation %d", n.id, describe(m), st.from.inc, up)
	case st.from.inc > up:
		s.violate("%s: %s of incarnation %d delivered before its PeerUp (last PeerUp: %d)", n.id, describe(m), st.from.inc, up)
	}
	if pl.quarantine != 0 && pl.quarantine == st.from.inc {
		pl.afterQuar++
	}
	seq, last := seqOf(m.Clock), pl.last[st.id]
	switch {
	case seq <= last:
		s.violate("%s: message %d of stream %d from %s delivered after message %d (duplicate or reordered)", n.id, seq, st.id, m.From, last)
	case seq != last+1 && !st.lossy:
		s.violate("%s: message %d of stream %d from %s delivered after message %d: the messages between were lost or reordered", n.id, seq, st.id, m.From, last)
	}
	if seq > last {
		pl.last[st.id] = seq
	}
	pl.msgs = append(pl.msgs, m)
}

// describe formats m for a violation, naming its stream and place in it.
func describe(m lamportmutex.Message) string {
	switch m.Kind {
	case lamportmutex.PeerUp, lamportmutex.PeerDown:
		return m.String()
	}
	return fmt.Sprintf("%s->%s %v (stream %d, message %d)", m.From, m.To, m.Kind, m.Clock>>32, seqOf(m.Clock))
}

// checkUps checks that every PeerUp received since the last check names
// an incarnation the Factory or Restart made. It runs on the test's
// goroutine, so a PeerUp that came before Restart returned is checked
// after.
func (s *suite) checkUps() {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	for _, n := range all {
		for id, pl := range n.peers {
			pl.mu.Lock()
			ups := pl.ups[pl.upsChecked:]
			pl.upsChecked = len(pl.ups)
			pl.mu.Unlock()
			for _, inc := range ups {
				if !s.knownIncarnation(id, inc) {
					s.violate("%s: PeerUp from %s names incarnation %d, which no transport of it has", n.id, id, inc)
				}
			}
		}
	}
}

// knownIncarnation reports whether some transport of id has inc.
func (s *suite) knownIncarnation(id string, inc uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.all {
		if n.id == id && n.inc == inc {
			return true
		}
	}
	return false
}

// got returns how many messages of stream st n has received.
func (n *node) got(st *stream) int {
	pl := n.peers[st.from.id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	c := 0
	for _, m := range pl.msgs {
		if m.Clock>>32 == st.id {
			c++
		}
	}
	return c
}

// hasAll reports whether n has received every message st had accepted.
func (n *node) hasAll(st *stream) bool { return n.got(st) >= st.accepted() }

// ups returns the PeerUp incarnations n has received from id.
func (n *node) ups(id string) []uint64 {
	pl := n.peers[id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]uint64(nil), pl.ups...)
}

// downs returns how many PeerDowns n has received from id.
func (n *node) downs(id string) int {
	pl := n.peers[id]
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.downs
}

// isUp reports whether n has received PeerUp of incarnation inc of id.
func (n *node) isUp(id string, inc uint64) bool {
	for _, u := range n.ups(id) {
		if u == inc {
			return true
		}
	}
	return false
}

// waitUp waits until every node in ns has received PeerUp from every other
// current node.
func (s *suite) waitUp(ns ...*node) {
	s.t.Helper()
	for _, n := range ns {
		for _, m := range ns {
			if n == m {
				continue
			}
			s.waitFor(fmt.Sprintf("PeerUp of %s (incarnation %d) at %s", m.id, m.inc, n.id),
				func() bool { return n.isUp(m.id, m.inc) })
		}
	}
}
