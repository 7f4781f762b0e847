package transport

import (
	"sort"
	"time"
)

// PeerStatus describes the link to one peer, for tools and the CLI.
type PeerStatus struct {
	// ID and Addr are the peer's id and configured address.
	ID   string
	Addr string
	// Connected reports whether the connection with the peer is up for
	// sending (handshake done); Since is when it last went up or down (zero
	// before that).
	Connected bool
	Since     time.Time
	// Inbound reports whether the connection is up for receiving;
	// InboundSince is when it last went up or down. There is one
	// connection per pair, so Connected and Inbound differ only for the
	// moments the handshake sets them one after the other.
	Inbound      bool
	InboundSince time.Time
	// Incarnation is the newest incarnation seen from the peer with TLS,
	// the one of its latest handshake without (0 before first contact);
	// Restarts counts the times it changed after that.
	Incarnation uint64
	Restarts    uint64
	// Reconnects counts the connections with the peer established after
	// the first one.
	Reconnects uint64
	// Left reports that the peer said goodbye (a clean exit, see Close)
	// and no handshake with it succeeded since. It is the peer's claim,
	// and means nothing more: a peer that left is down until it returns.
	Left bool
	// Queued is the number of messages queued or not yet acknowledged,
	// and QueuedBytes their size as counted against QueueBytes.
	Queued      int
	QueuedBytes int
	// MsgsSent and BytesSent count DATA frames written to the peer,
	// resends included; MsgsReceived and BytesReceived count messages
	// delivered from it, each counted just after deliver returned.
	// Bytes include framing.
	MsgsSent, BytesSent         uint64
	MsgsReceived, BytesReceived uint64
}

// Status returns the status of every peer, sorted by id.
func (t *TCP) Status() []PeerStatus {
	out := make([]PeerStatus, 0, len(t.peers))
	for _, p := range t.peers {
		st := PeerStatus{ID: p.id, Addr: p.addr}
		p.out.mu.Lock()
		st.Connected, st.Since = p.out.connected, p.out.since
		st.Reconnects = max(p.out.sessions, 1) - 1
		st.Queued, st.QueuedBytes = len(p.out.q), p.out.qBytes
		p.out.mu.Unlock()
		p.in.mu.Lock()
		st.Inbound, st.InboundSince = p.in.connected, p.in.since
		p.in.mu.Unlock()
		p.mu.Lock()
		st.Incarnation, st.Restarts, st.Left = p.inc, p.restarts, p.left
		p.mu.Unlock()
		st.MsgsSent, st.BytesSent = p.out.msgs.Load(), p.out.byts.Load()
		st.MsgsReceived, st.BytesReceived = p.in.msgs.Load(), p.in.byts.Load()
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
