package main

import (
	"github.com/lamportledger/lamportledger/ledger"
	"reflect"
	"time"
)

// pollCards reads every client's state and publishes the cards that
// changed. It runs on the hub's goroutine, never on a client's.
func (h *liveHub) pollCards() {
	h.mu.Lock()
	clients := make([]*client, 0, len(h.clients))
	for _, id := range h.local {
		if c := h.clients[id]; c != nil {
			clients = append(clients, c)
		}
	}
	h.mu.Unlock()
	var changed []liveEvent
	for _, c := range clients {
		card, ok := h.readCard(c)
		if !ok {
			continue
		}
		h.mu.Lock()
		old := h.cards[c.id]
		if old == nil || !reflect.DeepEqual(*old, card) {
			h.cards[c.id] = &card
			changed = append(changed, liveEvent{Type: "client", Client: c.id, Card: &card, T: time.Since(h.start).Microseconds()})
		}
		h.mu.Unlock()
	}
	h.publish(changed)
}

// readCard reads client c's state: the mutex's, the ledger's and the
// transport's.
func (h *liveHub) readCard(c *client) (liveCard, bool) {
	if c.node.Err() != nil { // closed: the last card, marked
		h.mu.Lock()
		defer h.mu.Unlock()
		if old := h.cards[c.id]; old != nil {
			card := *old
			card.Held, card.Queue, card.Missing, card.Waiting = false, []liveToken{}, []string{}, 0
			card.Failed = "exited"
			return card, true
		}
		return liveCard{}, false
	}
	st := c.node.LockState()
	card := liveCard{Clock: st.Clock, Held: st.Held, Waiting: st.Waiting, Missing: st.Missing,
		Queue: make([]liveToken, 0, len(st.Queue)), Balances: c.node.Balances(), Peers: map[string]string{}}
	if card.Missing == nil {
		card.Missing = []string{}
	}
	for _, t := range st.Queue {
		card.Queue = append(card.Queue, liveToken{Clock: t.Clock, ID: t.ID})
	}
	card.Height = c.node.Head().Height
	card.Chain = h.chainTail(c, card.Height)
	for _, p := range c.tcp.Status() {
		switch {
		case p.Connected && p.Inbound:
			card.Peers[p.ID] = "up"
		case p.Left:
			card.Peers[p.ID] = "left"
		case p.Connected || p.Inbound:
			card.Peers[p.ID] = "half"
		default:
			card.Peers[p.ID] = "down"
		}
	}
	if err := c.node.Err(); err != nil {
		card.Failed = err.Error()
	}
	return card, true
}

// chainTail returns the newest blocks of c's chain, newest first, as the
// ledger's events left them; after events were dropped (or at first) it
// reads the chain again.
//
// The events come after the blocks are in the chain, so the tail may be
// behind the head for a while; when it is behind at two polls in a row
// with the same head, an event was missed while the chain was read, and
// the chain is read again.
func (h *liveHub) chainTail(c *client, head uint64) []liveBlock {
	h.pmu.Lock()
	tail, ok := h.tails[c.id]
	h.pmu.Unlock()
	behind := ok && (len(tail) == 0 || tail[len(tail)-1].Height < head)
	if behind && h.behindAt[c.id] == head+1 {
		ok = false
		h.pmu.Lock()
		delete(h.tails, c.id)
		h.pmu.Unlock()
	}
	h.behindAt[c.id] = 0
	if behind {
		h.behindAt[c.id] = head + 1
	}
	if !ok {
		tail = nil
		from := c.node.Head().Height
		from -= min(from, liveChainShown-1)
		for b, err := range c.node.BlocksFrom(from) {
			if err != nil {
				break
			}
			tail = append(tail, toLiveBlock(b))
		}
		h.pmu.Lock()
		if _, raced := h.tails[c.id]; !raced {
			h.tails[c.id] = tail
		}
		tail = h.tails[c.id]
		h.pmu.Unlock()
	}
	out := make([]liveBlock, len(tail))
	for i, b := range tail {
		out[len(tail)-1-i] = b
	}
	return out
}

func toLiveBlock(b ledger.Block) liveBlock {
	lb := liveBlock{Height: b.Height, Hash: b.Hash.Short(), Clock: b.Clock}
	if b.Height > 0 {
		lb.Prev, lb.From, lb.To, lb.Amount = b.Prev.Short(), b.Transfer.From, b.Transfer.To, b.Transfer.Amount
	}
	return lb
}

// liveSnapshot is what a browser gets first, and again when its feed
// re-syncs: everything it needs to draw the page, then the stream goes on
// from Seq.
type liveSnapshot struct {
	Seq     uint64               `json:"seq"`
	Now     int64                `json:"now"` // microseconds since the hub started
	Members []string             `json:"members"`
	Local   []string             `json:"local"`
	Events  []liveEvent          `json:"events"`
	Output  []liveEvent          `json:"output"`
	Cards   map[string]*liveCard `json:"cards"`
	Lost    uint64               `json:"lost"`
	Resync  bool                 `json:"resync,omitempty"`
}

// snapshotLocked returns the hub's picture now; h.mu is held.
func (h *liveHub) snapshotLocked() liveSnapshot {
	cards := make(map[string]*liveCard, len(h.cards))
	for id, c := range h.cards {
		cards[id] = c
	}
	h.pmu.Lock()
	lost := h.lost
	h.pmu.Unlock()
	return liveSnapshot{Seq: h.seq, Now: time.Since(h.start).Microseconds(), Members: h.members, Local: h.local,
		Events: h.history.all(), Output: h.output.all(), Cards: cards, Lost: lost}
}

// snapshot returns the hub's picture now.
func (h *liveHub) snapshot() liveSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.snapshotLocked()
}

// subscribe adds a browser's feed and returns its first snapshot, or false
// when liveMaxSubs browsers are connected or the hub is closing. Events
// after the snapshot arrive on s.ch.
func (h *liveHub) subscribe() (*liveSub, liveSnapshot, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping || len(h.subs) >= liveMaxSubs {
		return nil, liveSnapshot{}, false
	}
	s := &liveSub{ch: make(chan liveEvent, liveSubQueue), resync: make(chan struct{}, 1)}
	h.subs[s] = true
	return s, h.snapshotLocked(), true
}

// resnap gives a lagging browser a fresh snapshot: what waits in its
// queue is dropped, and the stream goes on after the snapshot.
func (h *liveHub) resnap(s *liveSub) liveSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(s.ch) > 0 {
		<-s.ch
	}
	s.lagged = false
	snap := h.snapshotLocked()
	snap.Resync = true
	return snap
}

func (h *liveHub) unsubscribe(s *liveSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}
