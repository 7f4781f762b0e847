package lamportmutex

import "fmt"

// Token is a request's timestamp: the Lamport clock at which the request was
// made and the id of the peer that made it. Tokens order the request queue,
// and every peer orders them the same way, so the Token of a granted request
// is also a fencing token: tokens of successive grants strictly increase.
type Token struct {
	Clock uint64
	ID    string
}

// Less reports whether t orders before u: by Clock, then by ID.
func (t Token) Less(u Token) bool {
	if t.Clock != u.Clock {
		return t.Clock < u.Clock
	}
	return t.ID < u.ID
}

// String formats t as "(clock,id)".
func (t Token) String() string { return fmt.Sprintf("(%d,%s)", t.Clock, t.ID) }
