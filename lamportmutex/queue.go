package lamportmutex

import (
	"fmt"
	"slices"
)

// queue is the request queue: at most one Token per peer, kept sorted by
// Token.Less. The number of peers is small, so a sorted slice beats a heap.
type queue []Token

// put inserts t, replacing any earlier entry of the same peer. It panics
// if it finds the queue broken (two entries of one peer, or out of order),
// which only a bug can do.
func (q *queue) put(t Token) {
	q.remove(t.ID)
	if q.has(t.ID) {
		panic(fmt.Sprintf("lamportmutex: two requests of %s queued: %v", t.ID, *q))
	}
	i := len(*q)
	for i > 0 && t.Less((*q)[i-1]) {
		i--
	}
	if i > 0 && !(*q)[i-1].Less(t) || i+1 < len(*q) && !(*q)[i].Less((*q)[i+1]) {
		panic(fmt.Sprintf("lamportmutex: queue out of order at %v: %v", t, *q))
	}
	*q = slices.Insert(*q, i, t)
}

// remove deletes the entry of peer id, if any.
func (q *queue) remove(id string) {
	for i, t := range *q {
		if t.ID == id {
			*q = append((*q)[:i], (*q)[i+1:]...)
			return
		}
	}
}

// head returns the first entry.
func (q queue) head() (Token, bool) {
	if len(q) == 0 {
		return Token{}, false
	}
	return q[0], true
}

// has reports whether peer id has an entry.
func (q queue) has(id string) bool {
	for _, t := range q {
		if t.ID == id {
			return true
		}
	}
	return false
}

// hasToken reports whether t is queued.
func (q queue) hasToken(t Token) bool {
	i, ok := slices.BinarySearchFunc(q, t, func(u, t Token) int {
		if u.Less(t) {
			return -1
		}
		if t.Less(u) {
			return 1
		}
		return 0
	})
	return ok && q[i] == t
}
