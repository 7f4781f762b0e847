package main

import (
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// Bounds of the live page's feed (see liveHub).
const (
	// livePending bounds the events taken from the clients and not yet
	// handled by the hub's goroutine; past it, events are dropped and
	// counted.
	livePending = 8192
	// liveHistory bounds the events a snapshot (and the JSON trace) holds:
	// the newest ones.
	liveHistory = 4000
	// liveOutput bounds the output lines a snapshot holds.
	liveOutput = 300
	// liveSubQueue bounds the events waiting for one browser; a browser
	// that falls further behind is sent a fresh snapshot instead.
	liveSubQueue = 1024
	// liveMaxSubs bounds the browsers connected at once.
	liveMaxSubs = 16
	// liveCommands bounds the page's command lines waiting for the
	// session; past it the page is told to try again.
	liveCommands = 16
	// liveOutLine bounds one output line as the page gets it.
	liveOutLine = 4096
)

// liveEvent is one event of the feed, as the page gets it in JSON.
type liveEvent struct {
	Seq  uint64 `json:"seq"`
	T    int64  `json:"t"` // microseconds since the hub started
	Type string `json:"type"`
	// Client is the client the event happened at.
	Client string `json:"client,omitempty"`

	// "msg": a message sent or received at Client (Sent), with the clock
	// before and after. From, To, Kind and Clock are the message's.
	Sent   bool   `json:"sent,omitempty"`
	Kind   string `json:"kind,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Clock  uint64 `json:"clock,omitempty"`
	Before uint64 `json:"before,omitempty"`
	After  uint64 `json:"after,omitempty"`

	// "enter" and "exit": Client took or released the lock, granted at
	// Clock (the fencing token's clock); "exit" carries Blocks, the blocks
	// the release carried.
	Blocks int `json:"blocks,omitempty"`

	// "client": Card is Client's state now.
	Card *liveCard `json:"card,omitempty"`

	// "out": Text is one line the process printed.
	Text string `json:"text,omitempty"`

	// "lost": Lost events were dropped because the hub fell behind.
	Lost uint64 `json:"lost,omitempty"`
}

// liveCard is what the page shows of one client of this process.
type liveCard struct {
	Clock    uint64            `json:"clock"`
	Held     bool              `json:"held"`
	Queue    []liveToken       `json:"queue"`
	Missing  []string          `json:"missing"`
	Waiting  int               `json:"waiting"`
	Height   uint64            `json:"height"`
	Chain    []liveBlock       `json:"chain"` // newest first, at most liveChainShown
	Balances map[string]int64  `json:"balances"`
	Peers    map[string]string `json:"peers"` // peer -> "up", "half", "down", "left"
	Failed   string            `json:"failed,omitempty"`
}

type liveToken struct {
	Clock uint64 `json:"clock"`
	ID    string `json:"id"`
}

type liveBlock struct {
	Height uint64 `json:"height"`
	Hash   string `json:"hash"`
	Prev   string `json:"prev"`
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
	Clock  uint64 `json:"clock"`
}

// liveChainShown bounds the blocks of a chain a card shows.
const liveChainShown = 12

// liveSub is one browser's feed: events wait in ch; when ch is full the
// browser is marked lagged and gets a fresh snapshot instead of what it
// missed.
type liveSub struct {
	ch     chan liveEvent
	lagged bool // under liveHub.mu
	resync chan struct{}
}

// liveHub gathers the events of this process's clients for the live page.
//
// The clients hand it events where they must not wait (the mutex's Trace
// hook runs on the mutex's goroutine): note only appends to a bounded
// slice under a short lock and never blocks. The hub's own goroutine
// (run) numbers the events, keeps the newest liveHistory of them for
// snapshots, polls the clients' state when something happened, and hands
// every event to each browser without waiting: a browser that cannot keep
// up gets a snapshot instead (its feed re-syncs), and nothing it does
// reaches a client.
type liveHub struct {
	start   time.Time
	members []string
	local   []string
	metrics *liveMetrics

	// pmu guards what the clients hand over; it is held only to append.
	pmu     sync.Mutex
	pending []liveEvent
	lostNow uint64 // dropped since the last "lost" event
	dirty   bool   // a client changed: poll the cards
	partial []byte // output not yet ended by a newline
	// tails are the newest blocks of each client's chain, oldest first, as
	// its ledger events reported them; a client is missing until its chain
	// is read, and again after its events were dropped.
	tails map[string][]liveBlock
	wake  chan struct{}

	// mu guards what the hub's goroutine keeps and the browsers read.
	mu       sync.Mutex
	seq      uint64
	history  liveRing // the newest liveHistory events
	output   liveRing // the newest liveOutput lines
	cards    map[string]*liveCard
	subs     map[*liveSub]bool
	clients  map[string]*client
	stopping bool
	// behindAt is, per client, 1 + the head height at which its chain
	// tail was last seen behind the head (0: it was not); the hub's
	// goroutine only.
	behindAt map[string]uint64

	commands chan string // the page's command lines, for the session
	stop     chan struct{}
	done     chan struct{}
	// Counts of the feed's work, for /metrics, under mu: events
	// published, handed to browsers, and re-syncs of lagging browsers.
	events, sent, resyncs uint64
	// lost counts events dropped before the hub took them, under pmu.
	lost uint64
}

// newLiveHub returns a hub; startLiveServer names the members and this
// process's clients and starts it.
func newLiveHub() *liveHub {
	h := &liveHub{start: time.Now(), wake: make(chan struct{}, 1),
		history: newLiveRing(liveHistory), output: newLiveRing(liveOutput),
		tails: map[string][]liveBlock{}, behindAt: map[string]uint64{}, cards: map[string]*liveCard{}, subs: map[*liveSub]bool{}, clients: map[string]*client{},
		commands: make(chan string, liveCommands), stop: make(chan struct{}), done: make(chan struct{})}
	h.metrics = newLiveMetrics(h)
	return h
}

// note queues ev without waiting; it drops and counts ev if the hub is
// livePending events behind.
func (h *liveHub) note(ev liveEvent) {
	ev.T = time.Since(h.start).Microseconds()
	h.pmu.Lock()
	if len(h.pending) >= livePending {
		h.lostNow++
		h.lost++
		h.pmu.Unlock()
		return
	}
	h.pending = append(h.pending, ev)
	if ev.Type != "out" {
		h.dirty = true
	}
	h.pmu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// trace is client id's Config.Trace hook: it runs on the mutex's
// goroutine and only queues.
func (h *liveHub) trace(id string, ev lamportmutex.Event) {
	m := ev.Message
	if m.Kind == 0 {
		h.note(liveEvent{Type: "local", Client: id, Before: ev.Before, After: ev.Clock})
		return
	}
	h.metrics.message(id, ev)
	h.note(liveEvent{Type: "msg", Client: id, Sent: ev.Sent, Kind: m.Kind.String(), From: m.From, To: m.To,
		Clock: m.Clock, Before: ev.Before, After: ev.Clock})
}

// ledgerEvent is called on client id's ledger event goroutine.
func (h *liveHub) ledgerEvent(id string, ev ledger.Event) {
	h.metrics.ledgerEvent(id, ev)
	switch ev.Kind { // a critical section, shown as a band
	case ledger.EventLockGranted:
		h.note(liveEvent{Type: "enter", Client: id, Clock: ev.Clock})
	case ledger.EventLockReleased:
		h.note(liveEvent{Type: "exit", Client: id, Blocks: ev.Blocks})
	}
	h.pmu.Lock()
	h.dirty = true
	switch ev.Kind {
	case ledger.EventDropped:
		delete(h.tails, id)
	case ledger.EventBlockInserted:
		tail, ok := h.tails[id]
		switch {
		case !ok || len(tail) > 0 && ev.Block.Height <= tail[len(tail)-1].Height:
		case len(tail) > 0 && ev.Block.Height != tail[len(tail)-1].Height+1:
			delete(h.tails, id) // a gap: read the chain again
		default:
			if len(tail) >= liveChainShown {
				tail = append(tail[:0:0], tail[1:]...)
			}
			h.tails[id] = append(tail, toLiveBlock(ev.Block))
		}
	}
	h.pmu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Write takes the process's output (a printer writes it from its own
// goroutine) and queues it as lines.
func (h *liveHub) Write(b []byte) (int, error) {
	h.pmu.Lock()
	h.partial = append(h.partial, b...)
	var lines []string
	for {
		i := indexNewline(h.partial)
		if i < 0 {
			break
		}
		lines = append(lines, string(h.partial[:min(i, liveOutLine)]))
		h.partial = h.partial[i+1:]
	}
	if len(h.partial) > liveOutLine {
		lines = append(lines, string(h.partial[:liveOutLine]))
		h.partial = nil
	}
	h.partial = append([]byte(nil), h.partial...)
	h.pmu.Unlock()
	for _, l := range lines {
		h.note(liveEvent{Type: "out", Text: l})
	}
	return len(b), nil
}

func indexNewline(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// attach makes c's state part of the page; it is called before c's
// mutex starts.
func (h *liveHub) attach(c *client) {
	h.mu.Lock()
	h.clients[c.id] = c
	h.mu.Unlock()
}

// begin starts the hub's goroutine, which runs until close.
func (h *liveHub) begin() { go h.run() }

// close stops the hub's goroutine and ends every browser's feed.
func (h *liveHub) close() {
	h.mu.Lock()
	already := h.stopping
	h.stopping = true
	h.mu.Unlock()
	if already {
		return
	}
	close(h.stop)
	<-h.done
}

// livePoll is how often the hub looks at the clients' state when
// something happened, and livePollIdle when nothing did (peers can go
// down without an event).
const (
	livePoll     = 50 * time.Millisecond
	livePollIdle = time.Second
)

func (h *liveHub) run() {
	defer close(h.done)
	poll := time.NewTicker(livePoll)
	defer poll.Stop()
	lastPoll := time.Time{}
	for {
		select {
		case <-h.stop:
			return
		case <-h.wake:
			h.publish(h.take())
		case <-poll.C:
			h.pmu.Lock()
			dirty := h.dirty
			h.dirty = false
			h.pmu.Unlock()
			if dirty || time.Since(lastPoll) >= livePollIdle {
				lastPoll = time.Now()
				h.pollCards()
			}
		}
	}
}

// take returns the pending events, with a "lost" event first if some were
// dropped.
func (h *liveHub) take() []liveEvent {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	evs := h.pending
	h.pending = nil
	if h.lostNow > 0 {
		evs = append([]liveEvent{{Type: "lost", Lost: h.lostNow, T: time.Since(h.start).Microseconds()}}, evs...)
		h.lostNow = 0
	}
	return evs
}

// publish numbers evs, keeps them for snapshots and hands them to every
// browser without waiting.
func (h *liveHub) publish(evs []liveEvent) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range evs {
		h.seq++
		ev.Seq = h.seq
		h.events++
		if ev.Type == "out" {
			h.output.add(ev)
		} else {
			h.history.add(ev)
		}
		for s := range h.subs {
			if s.lagged {
				continue
			}
			select {
			case s.ch <- ev:
				h.sent++
			default:
				s.lagged = true
				h.resyncs++
				select {
				case s.resync <- struct{}{}:
				default:
				}
			}
		}
	}
}

// liveRing holds the newest events added, at most its capacity.
type liveRing struct {
	buf  []liveEvent
	next int // where the next event goes once buf is full
}

func newLiveRing(n int) liveRing { return liveRing{buf: make([]liveEvent, 0, n)} }

func (r *liveRing) add(ev liveEvent) {
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, ev)
		return
	}
	r.buf[r.next] = ev
	r.next = (r.next + 1) % len(r.buf)
}

// all returns a copy of the events, oldest first.
func (r *liveRing) all() []liveEvent {
	out := make([]liveEvent, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
