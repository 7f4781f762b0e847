package lamportmutex

// queue is the request queue: at most one Token per peer, kept sorted by
// Token.Less. The number of peers is small, so a sorted slice beats a heap.
type queue []Token

// put inserts t, replacing any earlier entry of the same peer.
func (q *queue) put(t Token) {
	q.remove(t.ID)
	i := len(*q)
	for i > 0 && t.Less((*q)[i-1]) {
		i--
	}
	*q = append(*q, Token{})
	copy((*q)[i+1:], (*q)[i:])
	(*q)[i] = t
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
