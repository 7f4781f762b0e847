package lamportmutex

// The broken variants of the Machine that the checkers must catch. They
// are rules wrapped around the real ones, installed with a MachineOption
// after WithAlgorithm.

// enterEarly makes a Machine enter without rule 5, part ii: under
// Lamport's rules as soon as its request heads its queue, under
// Ricart-Agrawala's at once, without an answer from every peer.
func enterEarly(m *Machine) { m.rules = brokenRules{rules: m.rules, enterEarly: true} }

// unguarded drops the Machine's defence against a REQUEST ordered before
// the one it holds the lock with (such a REQUEST is queued and answered),
// and the invariant that the defence keeps. Clocks that wrap let an honest
// peer send one (cluster.wraps).
func unguarded(m *Machine) { m.rules = brokenRules{rules: m.rules} }

// brokenRules are rules with the defence against a REQUEST ordered before
// our held one dropped, and the invariant it keeps with it: a variant that
// lets such a REQUEST in is to be caught by the checkers, not refused by
// Step or stopped by a panic.
type brokenRules struct {
	rules
	enterEarly bool // enter without an answer from every peer
}

func (r brokenRules) answered(m *Machine, j int) bool {
	return r.enterEarly || r.rules.answered(m, j)
}

func (r brokenRules) refuse(m *Machine, j int, msg Message) error {
	if msg.Kind == Request && m.state == held && !m.q.has(msg.From) {
		return nil
	}
	return r.rules.refuse(m, j, msg)
}

func (r brokenRules) invariant(m *Machine) error {
	if m.state == held && !m.first() {
		return nil
	}
	return r.rules.invariant(m)
}

// chatty makes a Machine answer a REQUEST with a REPLY to every peer, not
// only to the requester: harmless to the invariants, but it breaks what the
// explorer's partial-order reduction assumes of an idle Machine with no
// requests left and of a waiting one that cannot be granted
// (world.silentToward), which the explorer must notice. With waitingOnly,
// it does so only while its own request waits, so that only the second
// assumption breaks.
func chatty(m *Machine) { m.rules = chattyRules{rules: m.rules} }

// chattyWaiting is chatty with waitingOnly.
func chattyWaiting(m *Machine) { m.rules = chattyRules{rules: m.rules, waitingOnly: true} }

type chattyRules struct {
	rules
	waitingOnly bool
}

func (r chattyRules) onRequest(m *Machine, j int, t Token) []Message {
	out := r.rules.onRequest(m, j, t)
	if r.waitingOnly && m.state != waiting {
		return out
	}
	for q := range m.peers {
		if q != j && q != m.self {
			out = append(out, m.reply(q))
		}
	}
	return out
}
