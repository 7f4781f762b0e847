package transport

import (
	"net"
	"slices"
	"sync"
	"time"
)

// maxPendingHandshakes caps the accepted connections whose hello has not
// yet been received and checked. When it is reached, a new connection
// evicts a pending one (see pendingSet.add) instead of being refused, so
// that connections that hold their slot without finishing cannot keep
// honest peers out: an honest dialer sends its hello within milliseconds,
// and is evicted only if maxPendingHandshakes newer connections arrive
// meanwhile from its address or from one holding at least as many slots.
// Each pending connection holds at most a goroutine, small handshake
// buffers and, with TLS, the TLS state, for at most HandshakeTimeout.
const maxPendingHandshakes = 32

// maxHandshakeGoroutines bounds the goroutines still running a handshake,
// evicted ones included (an evicted one ends as soon as its connection is
// closed); a connection beyond it is closed at once.
const maxHandshakeGoroutines = 2 * maxPendingHandshakes

// preambleTimeout bounds the wait for the first bytes of an accepted
// connection: the protocol preamble, or with TLS the header of the first
// TLS record. The rest of the handshake has until HandshakeTimeout from
// the accept.
const preambleTimeout = time.Second

// tlsRecordHeader is the size of a TLS record header, the first bytes a TLS
// dialer sends.
const tlsRecordHeader = 5

// capWarnEvery spaces the Warn lines about connections evicted over
// maxPendingHandshakes; the others are logged at Debug.
const capWarnEvery = 10 * time.Second

// pending is an accepted connection in its handshake.
type pending struct {
	conn    net.Conn
	host    string // the remote IP address
	evicted bool   // closed to make room; guarded by pendingSet.mu
}

// pendingSet holds the connections in their handshake, oldest first.
type pendingSet struct {
	mu   sync.Mutex
	list []*pending
}

// remoteHost returns the IP address of conn's remote end, or the whole
// address if it has no host part.
func remoteHost(conn net.Conn) string {
	a := conn.RemoteAddr()
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

// add records pc and, if that makes more than maxPendingHandshakes, removes
// and returns the one to evict: the oldest of those from the remote
// address holding the most slots, so that one address flooding the cap
// evicts its own connections before anyone else's. The caller closes the
// evicted connection.
func (ps *pendingSet) add(pc *pending) *pending {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.list = append(ps.list, pc)
	if len(ps.list) <= maxPendingHandshakes {
		return nil
	}
	counts := make(map[string]int, len(ps.list))
	most := 0
	for _, p := range ps.list {
		counts[p.host]++
		most = max(most, counts[p.host])
	}
	for i, p := range ps.list {
		if counts[p.host] == most {
			ps.list = slices.Delete(ps.list, i, i+1)
			p.evicted = true
			return p
		}
	}
	panic("transport: no pending handshake to evict") // most counts one of them
}

// remove forgets pc and reports whether it was evicted.
func (ps *pendingSet) remove(pc *pending) (evicted bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, p := range ps.list {
		if p == pc {
			ps.list = slices.Delete(ps.list, i, i+1)
			return false
		}
	}
	return pc.evicted
}

// wasEvicted reports whether pc was evicted.
func (ps *pendingSet) wasEvicted(pc *pending) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return pc.evicted
}

// closeAll closes every pending connection.
func (ps *pendingSet) closeAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		_ = p.conn.Close()
	}
}

// len returns the number of pending handshakes.
func (ps *pendingSet) len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.list)
}
