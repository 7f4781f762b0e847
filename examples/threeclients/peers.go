package main

import (
	"time"

	"github.com/lamportledger/lamportledger/transport"
)

// peerPoll is how often a client looks at its connections (a cheap
// snapshot of counters), and catchUpQuiet how long after the last block
// fetched from a peer it takes catch-up to be over.
const (
	peerPoll     = 50 * time.Millisecond
	catchUpQuiet = 500 * time.Millisecond
)

// peerView is what a client last said about one peer.
type peerView struct {
	seen bool // it was connected both ways once
	up   bool
	// The peer's counters when it was last seen coming up.
	restarts, reconnects uint64
}

// peerChange is what a look at a peer's status found since the last look.
type peerChange struct {
	down      bool // it went down
	back      bool // it came back, after down
	restarted bool // back as another incarnation
}

// observe updates v with st and says what changed. A peer is up when both
// streams are, and down when neither is; half a connection changes
// nothing (one stream comes up before the other). A peer that went down
// and came back between two looks shows in its counters: it is reported
// down and back.
func (v *peerView) observe(st transport.PeerStatus) peerChange {
	full := st.Connected && st.Inbound
	none := !st.Connected && !st.Inbound
	var c peerChange
	switch {
	case !v.seen:
		if !full {
			return c
		}
		v.seen, v.up = true, true
	case v.up && none:
		v.up = false
		c.down = true
		return c
	case v.up && full && (st.Restarts != v.restarts || st.Reconnects != v.reconnects):
		c.down, c.back = true, true
	case !v.up && full:
		v.up = true
		c.back = true
	default:
		return c
	}
	c.restarted = c.back && st.Restarts != v.restarts
	v.restarts, v.reconnects = st.Restarts, st.Reconnects
	return c
}
