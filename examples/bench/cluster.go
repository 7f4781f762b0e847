package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

// Transports a lock measurement can run over.
const (
	overChan = "chan"
	overTCP  = "tcp"
)

// benchCluster is the TCP transports' Cluster value.
const benchCluster = "lamportledger-bench"

// cluster is one Mutex per peer over one kind of transport, all in this
// process: built by newCluster, or by ledger nodes on the cluster's
// transports (views then reads their mutexes).
type cluster struct {
	ids   []string
	alg   lamportmutex.Algorithm
	trs   []lamportmutex.Transport
	mus   []*lamportmutex.Mutex
	views []peerView
	tcps  []*transport.TCP
	net   *transport.ChanNetwork
}

// peerView is what counts reads of one peer's mutex.
type peerView interface {
	State() lamportmutex.State
	Stats() lamportmutex.Stats
}

// peerIDs returns n ids that sort in their numeric order.
func peerIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%02d", i+1)
	}
	return ids
}

// newTransports starts n peers' transports over kind (overChan or
// overTCP), with no mutex yet.
func newTransports(kind string, n int) (*cluster, error) {
	c := &cluster{ids: peerIDs(n), trs: make([]lamportmutex.Transport, n)}
	switch kind {
	case overChan:
		nw, err := transport.NewChanNetwork(c.ids, transport.ChanOptions{})
		if err != nil {
			return nil, err
		}
		c.net = nw
		for i, id := range c.ids {
			ep, err := nw.Endpoint(id)
			if err != nil {
				_ = c.close()
				return nil, err
			}
			c.trs[i] = ep
		}
	case overTCP:
		tcps, err := newTCPGroup(c.ids)
		if err != nil {
			return nil, err
		}
		c.tcps = tcps
		for i, t := range tcps {
			c.trs[i] = t
		}
	default:
		return nil, fmt.Errorf("unknown transport %q", kind)
	}
	return c, nil
}

// newCluster starts n peers over kind (overChan or overTCP). wire, if set,
// completes each peer's Config.
func newCluster(kind string, n int, wire func(i int, cfg lamportmutex.Config) lamportmutex.Config) (*cluster, error) {
	c, err := newTransports(kind, n)
	if err != nil {
		return nil, err
	}
	for i, id := range c.ids {
		cfg := lamportmutex.Config{ID: id, Peers: c.ids, Transport: c.trs[i]}
		if wire != nil {
			cfg = wire(i, cfg)
		}
		c.alg = cfg.Algorithm
		mu, err := lamportmutex.New(cfg)
		if err != nil {
			_ = c.close()
			return nil, err
		}
		c.mus = append(c.mus, mu)
		c.views = append(c.views, mu)
	}
	return c, nil
}

// close closes the mutexes, then the transports.
func (c *cluster) close() error {
	var errs []error
	for _, mu := range c.mus {
		if err := mu.Close(context.Background()); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range c.tcps {
		errs = append(errs, t.Close(context.Background()))
	}
	if c.net != nil {
		errs = append(errs, c.net.Close(context.Background()))
	}
	return errors.Join(errs...)
}

// tally is what every peer's Mutex.Stats add up to.
type tally struct {
	entries, sent            uint64
	request, reply, release  uint64
	sendErrors, dropped, ups uint64
}

func (t tally) String() string {
	return fmt.Sprintf("entries %d, sent %d (request %d, reply %d, release %d), send errors %d, dropped %d, peerups received %d",
		t.entries, t.sent, t.request, t.reply, t.release, t.sendErrors, t.dropped, t.ups)
}

// counts adds up every peer's Mutex.Stats once the group is quiet: call
// it when no Lock is outstanding. A peer may enter on a later message
// other than a REPLY, so the last REPLYs (and RELEASEs) can still be on
// their way, or not even sent, when the last Unlock returns. counts waits
// until every peer's request queue is empty: a peer has then received
// every REQUEST and the RELEASE behind it on the same FIFO link, so it has
// sent its REPLY. It also waits until the counted REPLYs and RELEASEs
// match the REQUESTs, in case a send is counted after the step that made
// it. Under Ricart-Agrawala (no payloads here) no RELEASE is sent,
// and a REPLY is owed for every REQUEST.
func (c *cluster) counts(ctx context.Context) (tally, error) {
	// Quiet means every queue is empty and no caller waits, and every
	// REQUEST has had its REPLY: a peer may enter on a later message from
	// another before that one has even seen its REQUEST, so a REPLY can
	// still be owed after the last Lock returned.
	for {
		quiet := true
		for _, v := range c.views {
			if err := ctx.Err(); err != nil {
				return tally{}, err
			}
			st := v.State()
			quiet = quiet && len(st.Queue) == 0 && st.Waiting == 0
		}
		t := c.tally()
		wantRelease := t.request
		if c.alg == lamportmutex.RicartAgrawala {
			wantRelease = 0
		}
		if quiet && t.reply == t.request && t.release == wantRelease {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return tally{}, fmt.Errorf("waiting for the group to quiesce: %w", ctx.Err())
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// tally adds up every peer's counters.
func (c *cluster) tally() tally {
	var t tally
	for _, v := range c.views {
		s := v.Stats()
		t.entries += s.Entries
		t.request += s.Sent[lamportmutex.Request]
		t.reply += s.Sent[lamportmutex.Reply]
		t.release += s.Sent[lamportmutex.Release]
		t.sendErrors += s.SendErrors
		t.dropped += s.Dropped
		t.ups += s.Received[lamportmutex.PeerUp]
	}
	t.sent = t.request + t.reply + t.release
	return t
}

// newTCPGroup starts a TCP transport for every id on a free loopback port.
func newTCPGroup(ids []string) ([]*transport.TCP, error) {
	lns := make([]net.Listener, len(ids))
	addrs := make(map[string]string, len(ids))
	for i, id := range ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range lns[:i] {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns[i], addrs[id] = ln, ln.Addr().String()
	}
	var out []*transport.TCP
	for i, id := range ids {
		t, err := transport.NewTCP(transport.TCPConfig{ID: id, Listener: lns[i], Peers: addrs, Cluster: benchCluster})
		if err != nil {
			for _, t := range out {
				_ = t.Close(context.Background())
			}
			for _, l := range lns[i:] {
				_ = l.Close()
			}
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
