package main

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// liveMetrics are the Prometheus metrics of this process's clients, served
// at /metrics with -http. Counters that the library keeps (lamportmutex
// Stats, transport PeerStatus, the chain's height) are read when scraped;
// the rest are counted here from the hooks the library offers (the mutex's
// Trace, the ledger's events, and the Locker the ledger node is given).
type liveMetrics struct {
	reg         *prometheus.Registry
	lockWait    *prometheus.HistogramVec
	lockHold    *prometheus.HistogramVec
	batch       *prometheus.HistogramVec
	transfers   *prometheus.CounterVec
	catchUp     *prometheus.CounterVec
	peerEvents  *prometheus.CounterVec
	storeAppend *prometheus.HistogramVec
	storeSync   *prometheus.HistogramVec
	hub         *liveHub
}

// liveTimeBuckets span a lock taken at once on loopback (tens of µs) to
// one held up by -delay (seconds).
var liveTimeBuckets = prometheus.ExponentialBuckets(50e-6, 4, 11) // 50µs .. 52s

func newLiveMetrics(h *liveHub) *liveMetrics {
	m := &liveMetrics{reg: prometheus.NewRegistry(), hub: h}
	m.lockWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lamport_lock_wait_seconds",
		Help:    "Time from the ledger's Lock call to the grant, per client.",
		Buckets: liveTimeBuckets,
	}, []string{"client"})
	m.lockHold = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "lamport_lock_hold_seconds",
		Help:    "Time from the grant to the Unlock call (the critical section), per client.",
		Buckets: liveTimeBuckets,
	}, []string{"client"})
	m.batch = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ledger_commit_batch_blocks",
		Help:    "Blocks committed in one entry of the mutex (0: the entry committed nothing).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 13), // 1 .. 4096 = ledger.MaxBatch
	}, []string{"client"})
	m.transfers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledger_transfers_total",
		Help: "Transfers of this client by outcome: success, duplicate (a retried ID answered with its first outcome), insufficient_funds, or rejected.",
	}, []string{"client", "outcome"})
	m.catchUp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ledger_catchup_blocks_total",
		Help: "Blocks fetched from peers by catch-up (missed while this client or its link was down).",
	}, []string{"client"})
	m.peerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lamport_peer_events_total",
		Help: "Peer notifications the mutex got from the transport: event up (a new incarnation) or down (the connection was lost).",
	}, []string{"client", "peer", "event"})
	m.storeAppend = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ledger_store_append_seconds",
		Help:    "Time of one append to the client's store: the write of a batch of blocks (in memory with -memory).",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 13), // 1µs .. 17s
	}, []string{"client"})
	m.storeSync = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ledger_store_sync_seconds",
		Help:    "Time of one sync of the client's store: the fsync that makes every batch written before it durable.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 13), // 1µs .. 17s
	}, []string{"client"})
	m.reg.MustRegister(m.lockWait, m.lockHold, m.batch, m.transfers, m.catchUp, m.peerEvents, m.storeAppend, m.storeSync,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		liveCollector{m})
	return m
}

// message counts the peer notifications among the mutex's trace events.
func (m *liveMetrics) message(id string, ev lamportmutex.Event) {
	switch ev.Message.Kind {
	case lamportmutex.PeerUp:
		m.peerEvents.WithLabelValues(id, ev.Message.From, "up").Inc()
	case lamportmutex.PeerDown:
		m.peerEvents.WithLabelValues(id, ev.Message.From, "down").Inc()
	}
}

// ledgerEvent counts transfers by outcome and catch-up blocks.
func (m *liveMetrics) ledgerEvent(id string, ev ledger.Event) {
	switch ev.Kind {
	case ledger.EventTransferCommitted:
		outcome := "success"
		if ev.Duplicate {
			outcome = "duplicate"
		}
		m.transfers.WithLabelValues(id, outcome).Inc()
	case ledger.EventTransferRejected:
		outcome := "rejected"
		if errors.Is(ev.Err, ledger.ErrInsufficientFunds) {
			outcome = "insufficient_funds"
		}
		m.transfers.WithLabelValues(id, outcome).Inc()
	case ledger.EventBlockInserted:
		if ev.Fetched {
			m.catchUp.WithLabelValues(id).Inc()
		}
	case ledger.EventLockGranted:
		m.lockWait.WithLabelValues(id).Observe(ev.Elapsed.Seconds())
	case ledger.EventLockReleased:
		m.lockHold.WithLabelValues(id).Observe(ev.Elapsed.Seconds())
		m.batch.WithLabelValues(id).Observe(float64(ev.Blocks))
	}
}

// liveCollector reads, when scraped, what the library counts itself.
type liveCollector struct{ m *liveMetrics }

var (
	descEntries   = prometheus.NewDesc("lamport_mutex_entries_total", "Times this client took the lock.", []string{"client"}, nil)
	descSent      = prometheus.NewDesc("lamport_messages_sent_total", "Messages the mutex queued for the transport, by kind.", []string{"client", "kind"}, nil)
	descReceived  = prometheus.NewDesc("lamport_messages_received_total", "Messages the mutex received, by kind (PEERUP from the transport included).", []string{"client", "kind"}, nil)
	descDropped   = prometheus.NewDesc("lamport_messages_dropped_total", "Messages received and not acted on (non-member, quarantined, stale).", []string{"client", "why"}, nil)
	descQuar      = prometheus.NewDesc("lamport_quarantined_total", "Peer incarnations quarantined.", []string{"client"}, nil)
	descHeight    = prometheus.NewDesc("ledger_chain_height", "Height of the head of this client's chain.", []string{"client"}, nil)
	descEvDropped = prometheus.NewDesc("ledger_events_dropped_total", "Ledger events this client's subscriber missed.", []string{"client"}, nil)
	descPeerUp    = prometheus.NewDesc("transport_peer_connected", "1 when both streams with the peer are up, else 0.", []string{"client", "peer"}, nil)
	descReconn    = prometheus.NewDesc("transport_peer_reconnects_total", "Streams to the peer established after the first one.", []string{"client", "peer"}, nil)
	descRestarts  = prometheus.NewDesc("transport_peer_restarts_total", "Times the peer's incarnation changed.", []string{"client", "peer"}, nil)
	descQueued    = prometheus.NewDesc("transport_peer_queued_messages", "Messages queued for the peer or not yet acknowledged.", []string{"client", "peer"}, nil)
	descFeed      = prometheus.NewDesc("threeclients_live_events_total", "Events of the live page's feed: published, sent to browsers, lost (the hub fell behind), resyncs (a browser fell behind and got a snapshot).", []string{"what"}, nil)
	descBrowsers  = prometheus.NewDesc("threeclients_live_browsers", "Browsers connected to the live feed.", nil, nil)
)

func (liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descSent, descReceived, descDropped, descQuar, descHeight,
		descEvDropped, descPeerUp, descReconn, descRestarts, descQueued, descFeed, descBrowsers} {
		ch <- d
	}
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.m.hub
	h.mu.Lock()
	var clients []*client
	for _, id := range h.local {
		if cl := h.clients[id]; cl != nil {
			clients = append(clients, cl)
		}
	}
	events, sent, resyncs, browsers := h.events, h.sent, h.resyncs, len(h.subs)
	h.mu.Unlock()
	h.pmu.Lock()
	lost := h.lost
	h.pmu.Unlock()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, cl := range clients {
		st := cl.node.LockStats()
		counter(descEntries, float64(st.Entries), cl.id)
		for k, v := range st.Sent {
			counter(descSent, float64(v), cl.id, k.String())
		}
		for k, v := range st.Received {
			counter(descReceived, float64(v), cl.id, k.String())
		}
		counter(descDropped, float64(st.Dropped), cl.id, "dropped")
		counter(descDropped, float64(st.Stale), cl.id, "stale")
		counter(descQuar, float64(st.Quarantined), cl.id)
		gauge(descHeight, float64(cl.node.Head().Height), cl.id)
		counter(descEvDropped, float64(cl.node.EventsDropped()), cl.id)
		for _, p := range cl.tcp.Status() {
			up := 0.0
			if p.Connected && p.Inbound {
				up = 1
			}
			gauge(descPeerUp, up, cl.id, p.ID)
			counter(descReconn, float64(p.Reconnects), cl.id, p.ID)
			counter(descRestarts, float64(p.Restarts), cl.id, p.ID)
			gauge(descQueued, float64(p.Queued), cl.id, p.ID)
		}
	}
	counter(descFeed, float64(events), "published")
	counter(descFeed, float64(sent), "sent")
	counter(descFeed, float64(lost), "lost")
	counter(descFeed, float64(resyncs), "resyncs")
	gauge(descBrowsers, float64(browsers))
}

// timedStore is a client's ledger.Store with each Append timed for
// ledger_store_append_seconds, and each Sync for ledger_store_sync_seconds.
type timedStore struct {
	ledger.Store
	append, sync prometheus.Observer
}

func (s timedStore) Append(blocks ...ledger.Block) error {
	start := time.Now()
	err := s.Store.Append(blocks...)
	s.append.Observe(time.Since(start).Seconds())
	return err
}

func (s timedStore) Sync() error {
	start := time.Now()
	err := s.Store.Sync()
	s.sync.Observe(time.Since(start).Seconds())
	return err
}
