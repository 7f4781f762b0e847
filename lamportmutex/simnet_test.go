package lamportmutex

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
)

// This file models a network of Machines for the simulation, the
// exhaustive explorer and the golden scripts: one FIFO queue per directed
// pair of peers, and restarts exactly as the Transport contract allows them.

// envelope is one message in flight.
type envelope struct {
	id      uint64  // unique per message ever sent (simulation only)
	msg     Message // what the machine sent, or a PeerUp the transport made
	destInc int     // incarnation of msg.To when the message was sent
}

// cluster is N Machines and the links between them.
type cluster struct {
	ids    []string
	ms     []*Machine
	inc    []int                // current incarnation of each peer
	links  [][][]envelope       // links[from][to], head first
	track  bool                 // keep inflight and session clocks (simulation, golden)
	nextID uint64               // next envelope id
	flight map[uint64]bool      // ids sent and neither delivered nor dropped
	last   [][]uint64           // last[from][to]: clock of the last message in the current session
	logf   func(string, ...any) // optional narration of every event
	opts   []MachineOption      // for every Machine, restarted ones too
	shared []bool               // per peer: its Machine is shared with a clone (explorer; see mutable)
	// peerDowns: a crash puts a PEERDOWN of the dead incarnation before the
	// PEERUP of the new one on each link out of it (the walk; the Machine
	// ignores PEERDOWN, so the explorer leaves it out).
	peerDowns bool

	// A faulty member (the Byzantine simulation): its index or -1. Honest
	// receivers quarantine it on a protocol violation as a Mutex does:
	// quar[to][from] is the incarnation of from that to quarantined, or -1.
	faulty int
	quar   [][]int
	// reformed is set once the faulty member has restarted as an honest
	// incarnation: from then on it refuses nothing.
	reformed bool
	// wraps (a broken variant, checker checks only): honest Machines apply
	// a clock above MaxClock, or more than MaxClockStep ahead, with the
	// plain receive rule, max(clock, c)+1, which wraps, instead of refusing
	// it.
	wraps bool
}

// peerIDs returns the ids "1".."n".
func peerIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	return ids
}

// newCluster starts n fresh Machines. As at first contact in a real
// transport, every link carries a PeerUp marker as its first item: no
// machine can stamp a request before it has heard from every peer.
func newCluster(ids []string, track bool, opts ...MachineOption) (*cluster, error) {
	n := len(ids)
	c := &cluster{
		ids:    slices.Clone(ids),
		ms:     make([]*Machine, n),
		inc:    make([]int, n),
		links:  make([][][]envelope, n),
		track:  track,
		opts:   opts,
		last:   make([][]uint64, n),
		faulty: -1,
		quar:   make([][]int, n),
	}
	if track {
		c.flight = make(map[uint64]bool)
	}
	for i := range n {
		m, err := NewMachine(ids[i], ids, 0, opts...)
		if err != nil {
			return nil, err
		}
		c.ms[i] = m
		c.links[i] = make([][]envelope, n)
		c.last[i] = make([]uint64, n)
		c.quar[i] = slices.Repeat([]int{-1}, n)
	}
	for from := range n {
		for to := range n {
			if from != to {
				c.links[from][to] = []envelope{c.envelope(c.peerUp(from, to), to)}
			}
		}
	}
	return c, nil
}

func (c *cluster) peerUp(from, to int) Message {
	return Message{Kind: PeerUp, From: c.ids[from], To: c.ids[to], Incarnation: uint64(c.inc[from])}
}

func (c *cluster) envelope(m Message, to int) envelope {
	e := envelope{id: c.nextID, msg: m, destInc: c.inc[to]}
	c.nextID++
	if c.track {
		c.flight[e.id] = true
	}
	return e
}

func (c *cluster) say(format string, args ...any) {
	if c.logf != nil {
		c.logf(format, args...)
	}
}

func (c *cluster) index(id string) int {
	for i, p := range c.ids {
		if p == id {
			return i
		}
	}
	return -1
}

// clone returns a copy for the explorer (not tracked) that changes
// independently of c. It shares c's Machines until it changes one (see
// mutable), and the links' backing arrays, capped so that an append to a
// link in either copy reallocates; removing a link's head only reslices.
// It shares quar and last, which an untracked cluster with no faulty
// member leaves as they are, so clones may move on different goroutines.
func (c *cluster) clone() *cluster {
	d := *c
	d.ms = slices.Clone(c.ms)
	d.shared = make([]bool, len(c.ms))
	for i := range d.shared {
		d.shared[i] = true
	}
	if c.shared == nil {
		c.shared = make([]bool, len(c.ms))
	}
	for i := range c.shared {
		c.shared[i] = true // c's own Machines are shared now too
	}
	d.inc = slices.Clone(c.inc)
	n := len(c.links)
	d.links = make([][][]envelope, n)
	rows := make([][]envelope, n*n)
	for i := range c.links {
		d.links[i] = rows[i*n : (i+1)*n : (i+1)*n]
		for j, l := range c.links[i] {
			d.links[i][j] = l[:len(l):len(l)]
			c.links[i][j] = d.links[i][j]
		}
	}
	d.track, d.flight, d.logf = false, nil, nil
	return &d
}

// mutable makes peer p's Machine c's own, copying it if c shares it with a
// clone, before c changes it.
func (c *cluster) mutable(p int) *Machine {
	if c.shared != nil && c.shared[p] {
		c.ms[p] = c.ms[p].Clone()
		c.shared[p] = false
	}
	return c.ms[p]
}

// send queues the messages machine p returned, checking that p sent them
// as itself to a peer, and that within one session of a link (one
// incarnation of p, between two PeerUps of the receiver as seen by p)
// clocks strictly increase: no message is ever sent twice.
func (c *cluster) send(p int, out []Message) error {
	for i, m := range out {
		q := c.index(m.To)
		switch {
		case m.From != c.ids[p]:
			return fmt.Errorf("peer %s sent a message as %q: %v", c.ids[p], m.From, m)
		case q < 0 || q == p:
			return fmt.Errorf("peer %s sent a message to a non-peer: %v", c.ids[p], m)
		case m.Kind == PeerUp || m.Kind == PeerDown || !m.Kind.Valid():
			return fmt.Errorf("peer %s sent a message of kind %v", c.ids[p], m.Kind)
		}
		// A request resent to a new incarnation keeps its original stamp,
		// below the HELLO just before it: not a duplicate.
		own, issued := c.ms[p].Own()
		resend := m.Kind == Request && issued && m.Clock == own.Clock &&
			i > 0 && out[i-1].Kind == Hello && out[i-1].To == m.To
		// Clocks saturated at MaxClock repeat (a faulty peer pushed them
		// there); wrapped ones go back.
		if c.track && !resend && m.Kind != Data && m.Clock < MaxClock && !c.wraps { // DATA is the application's: its clock is informational
			if l := c.last[p][q]; l != 0 && m.Clock <= l {
				return fmt.Errorf("duplicate message: %v sent after a message at clock %d in the same session", m, l)
			}
			c.last[p][q] = m.Clock
		}
		if c.logf != nil {
			c.say("%s sends %s", c.ids[p], narrate(m))
		}
		c.links[p][q] = append(c.links[p][q], c.envelope(m, q))
	}
	return nil
}

// deliver hands the message at position i of link from->to (0 is the head;
// anything else breaks FIFO and is used only to check the checkers) to its
// receiver and queues what it sends.
func (c *cluster) deliver(from, to, i int) error {
	l := c.links[from][to]
	if i < 0 || i >= len(l) {
		return fmt.Errorf("deliver %s->%s #%d: link holds %d messages", c.ids[from], c.ids[to], i, len(l))
	}
	e := l[i]
	c.links[from][to] = append(l[:i:i], l[i+1:]...)
	if c.track {
		if !c.flight[e.id] {
			return fmt.Errorf("message #%d %v delivered twice", e.id, e.msg)
		}
		delete(c.flight, e.id)
	}
	if q := c.quar[to][from]; q >= 0 {
		if e.msg.Kind != PeerUp || e.msg.Incarnation <= uint64(q) {
			c.say("%s ignores %s: that incarnation is quarantined", c.ids[to], narrate(e.msg))
			return nil
		}
		c.quar[to][from] = -1
	}
	if e.msg.Kind == PeerUp && c.track {
		// The receiver talks to a new incarnation of the sender from now on.
		c.last[to][from] = 0
	}
	c.mutable(to)
	if c.logf != nil {
		c.say("%s receives %s", c.ids[to], narrate(e.msg))
	}
	was := c.ms[to].Held()
	out, err := c.ms[to].Step(e.msg)
	if errors.Is(err, ErrStale) {
		c.say("%s ignores it: it came before %s's HELLO", c.ids[to], c.ids[from])
		return nil
	}
	if errors.Is(err, ErrViolation) && c.wraps {
		switch werr := acceptsAnyClock(c.ms[to], e.msg); {
		case werr == nil:
			out, err = stepWrapping(c.ms[to], e.msg), nil
		case errors.Is(werr, ErrStale):
			return nil
		}
	}
	if errors.Is(err, ErrViolation) && from == c.faulty {
		c.quarantine(to, from, err)
		return nil
	}
	if err != nil && to == c.faulty && !c.reformed {
		c.say("%s (faulty) refuses it: %v", c.ids[to], err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("step %v: %w", e.msg, err)
	}
	if err := c.send(to, out); err != nil {
		return err
	}
	c.sayEntered(to, was)
	return nil
}

// quarantine is what a Mutex does when peer to finds a protocol violation
// from peer from: it ignores from's current incarnation (as to knows it)
// until a PeerUp of a newer one, and the transport drops what it holds
// from that incarnation.
func (c *cluster) quarantine(to, from int, cause error) {
	inc, _ := c.ms[to].PeerIncarnation(c.ids[from])
	c.quar[to][from] = int(inc)
	c.say("%s quarantines %s#%d: %v", c.ids[to], c.ids[from], inc, cause)
	l := c.links[from][to]
	cut := len(l)
	for i, e := range l {
		if e.msg.Kind == PeerUp && e.msg.Incarnation > inc {
			cut = i
			break
		}
	}
	c.forget(l[:cut])
	c.links[from][to] = l[cut:]
}

// acceptsAnyClock is Machine.Accepts with no bound on the clock, neither
// MaxClock nor MaxClockStep (for the broken variant, cluster.wraps).
func acceptsAnyClock(m *Machine, msg Message) error {
	msg.Clock = 0
	return m.Accepts(msg)
}

// stepWrapping is Lamport's receive rule without the MaxClock check, as it
// was before MaxClock existed: the clock becomes max(clock, msg.Clock)+1,
// which wraps for msg.Clock = 2^64-1. Only the broken variant uses it.
func stepWrapping(m *Machine, msg Message) []Message {
	j, _ := m.index(msg.From)
	var out []Message
	m.clock = max(m.clock, msg.Clock) + 1
	m.peers[j].latest = max(m.peers[j].latest, msg.Clock)
	switch msg.Kind {
	case Hello:
		m.peers[j].heard = true
	case Request:
		m.q.put(Token{Clock: msg.Clock, ID: msg.From})
		m.clock++
		out = append(out, m.message(Reply, j, m.clock, nil))
	case Release:
		m.q.remove(msg.From)
	}
	if m.state == pending && m.Synced() {
		out = append(out, m.issue()...)
	}
	return append(out, m.tryEnter()...)
}

// request makes peer p request the lock.
func (c *cluster) request(p int) error {
	out, err := c.mutable(p).Request()
	if err != nil {
		return fmt.Errorf("request %s: %w", c.ids[p], err)
	}
	if len(out) == 0 && !c.ms[p].Held() {
		c.say("%s holds its request back until it has heard from every peer", c.ids[p])
	}
	err = c.send(p, out)
	c.sayEntered(p, false)
	return err
}

// sayEntered narrates a grant to p.
func (c *cluster) sayEntered(p int, was bool) {
	if m := c.ms[p]; m.Held() && !was {
		own, _ := m.Own()
		c.say("%s ENTERS with %v", c.ids[p], own)
	}
}

// release makes peer p release the lock (payload non-nil) or withdraw its
// waiting request (payload nil).
func (c *cluster) release(p int, payload []byte) error {
	out, err := c.mutable(p).Release(payload)
	if err != nil {
		return fmt.Errorf("release %s: %w", c.ids[p], err)
	}
	return c.send(p, out)
}

// crash kills peer p and starts a fresh incarnation in its place, as the
// Transport contract allows:
//   - of each outbound link p->q, a prefix of keep[q] messages survives (they
//     had left p; the rest were lost with it), followed by PeerUp(p), so q
//     hears of the new incarnation before any of its messages;
//   - each inbound link q->p is dropped (dropIn[q]) or kept, minus whatever
//     belongs to earlier incarnations of q (a transport delivers messages of
//     q's current incarnation addressed to the dead p to the new p, or drops
//     them); either way the new p first receives PeerUp(q).
func (c *cluster) crash(p int, keep []int, dropIn []bool) error {
	var err error
	down := Message{Kind: PeerDown, From: c.ids[p], Incarnation: uint64(c.inc[p])}
	c.inc[p]++
	c.ms[p], err = NewMachine(c.ids[p], c.ids, uint64(c.inc[p]), c.opts...)
	if err != nil {
		return err
	}
	if c.shared != nil {
		c.shared[p] = false
	}
	for q, inc := range c.quar[p] {
		// The new process has quarantined nobody. (The explorer's clones
		// share quar, where nothing is ever set: write only a change.)
		if inc != -1 {
			c.quar[p][q] = -1
		}
	}
	c.say("%s crashes and restarts (incarnation %d)", c.ids[p], c.inc[p])
	for q := range c.ids {
		if q == p {
			continue
		}
		out := c.links[p][q]
		k := min(keep[q], len(out))
		c.forget(out[k:])
		if len(out) > k {
			c.say("  lost on %s->%s: %d messages", c.ids[p], c.ids[q], len(out)-k)
		}
		out = out[:k:k]
		if c.peerDowns {
			down.To = c.ids[q]
			out = append(out, c.envelope(down, q))
		}
		c.links[p][q] = append(out, c.envelope(c.peerUp(p, q), q))

		in := c.links[q][p]
		if dropIn[q] {
			c.forget(in)
			if len(in) > 0 {
				c.say("  dropped on %s->%s: %d messages", c.ids[q], c.ids[p], len(in))
			}
			in = nil
		} else {
			cut := 0
			for i, e := range in {
				if e.msg.Kind == PeerUp {
					cut = i + 1
				}
			}
			c.forget(in[:cut])
			in = in[cut:]
		}
		c.links[q][p] = append([]envelope{c.envelope(c.peerUp(q, p), p)}, in...)
		if c.track {
			c.last[p][q] = 0
		}
	}
	return nil
}

func (c *cluster) forget(es []envelope) {
	if c.track {
		for _, e := range es {
			delete(c.flight, e.id)
		}
	}
}

// randomLink picks, uniformly, a link that has a message on it; ok is
// false when none has.
func (c *cluster) randomLink(rng *rand.Rand) (from, to int, ok bool) {
	var links [][2]int
	for f := range c.links {
		for t, l := range c.links[f] {
			if len(l) > 0 {
				links = append(links, [2]int{f, t})
			}
		}
	}
	if len(links) == 0 {
		return 0, 0, false
	}
	l := links[rng.IntN(len(links))]
	return l[0], l[1], true
}

// busy reports whether any message is in flight.
func (c *cluster) busy() bool {
	for _, row := range c.links {
		for _, l := range row {
			if len(l) > 0 {
				return true
			}
		}
	}
	return false
}

// holder returns the peer holding the lock, or -1.
func (c *cluster) holder() int {
	for i, m := range c.ms {
		if m.Held() {
			return i
		}
	}
	return -1
}

// machineString describes m for traces and golden scripts.
func machineString(m *Machine) string {
	s := fmt.Sprintf("%s: clock=%d queue=%v", m.ID(), m.clock, []Token(m.q))
	s += " latest=["
	sep := ""
	for i, p := range m.peers {
		if i == m.self {
			continue
		}
		h := ""
		if !p.heard {
			h = "?"
		}
		s += fmt.Sprintf("%s%s:%d%s", sep, p.id, p.latest, h)
		sep = " "
	}
	s += "]"
	switch {
	case m.Held():
		s += fmt.Sprintf(" HOLDS %v", m.own)
	case m.state.stamped():
		s += fmt.Sprintf(" waits %v", m.own)
	case m.state == pending:
		s += " pending (not synced)"
	}
	return s
}

// narrate formats m for traces and golden scripts: as Message.String, but
// with the payload's bytes.
func narrate(m Message) string {
	payload := m.Payload
	if payload == nil {
		return m.String()
	}
	m.Payload = nil
	return fmt.Sprintf("%v payload=%q", m, payload)
}

// linkString lists the messages on link from->to.
func (c *cluster) linkString(from, to int) string {
	s := c.ids[from] + "->" + c.ids[to] + ":"
	for _, e := range c.links[from][to] {
		s += " " + e.msg.Kind.String()
		if e.msg.Kind != PeerUp {
			s += "@" + strconv.FormatUint(e.msg.Clock, 10)
		}
		if e.msg.Payload != nil {
			s += fmt.Sprintf("(%q)", e.msg.Payload)
		}
	}
	return s
}

// boot delivers every message in flight, lowest link first, until the
// network is quiet: after first contact every Machine has heard from every
// peer.
func boot(c *cluster) error {
	for c.busy() {
		for f := range c.ids {
			for t := range c.ids {
				if len(c.links[f][t]) > 0 {
					if err := c.deliver(f, t, 0); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
