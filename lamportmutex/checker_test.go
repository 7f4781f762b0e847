package lamportmutex

import (
	"fmt"
	"strings"
	"testing"
)

// checker holds what the invariants need to remember between steps. The
// simulation, the explorer and the golden scripts check after every step:
//
//   - Mutual exclusion: at most one Machine holds the lock.
//   - Grant order: a newly granted token is greater than every token
//     granted before. Lamport's algorithm grants in (clock, id) order; the
//     granted token is a fencing token. Across restarts the order is owed
//     only while no two restarts overlap: a restarted Machine stamps its
//     requests after the HELLOs of every peer, and a HELLO carries a clock
//     past every earlier grant only if its sender was itself synced (had
//     every peer's HELLO). So when a peer crashes while another Machine is
//     not synced (a cascade of restarts), or when no live Machine's clock
//     reaches the greatest grant, the order starts afresh (counted in
//     resets). Mutual exclusion and update-before-release are owed always.
//   - Update-before-release: when peer p enters, no RELEASE carrying a
//     payload that was sent to p's current incarnation is still in flight
//     to p. A release sent before p restarted is the ledger's recovery
//     business, and one lost with its crashed sender was never delivered
//     anywhere it is owed; every other earlier payload must have been
//     handled by p before it may enter. (This is sound: the releaser's
//     request was in p's queue, sent to this incarnation or resent after
//     PeerUp, and a RELEASE travels the same FIFO link ahead of any message
//     that lets p pass.)
//   - No duplicates (cluster.send and cluster.deliver): a message id is
//     delivered at most once, and within one session of a link clocks
//     strictly increase, so no message of any kind is sent twice.
type checker struct {
	held    []bool // holders as of the last check
	maxTok  Token  // greatest token granted
	haveMax bool
	grants  int // entries granted
	resets  int // times the grant order started afresh
	// faulty is a member the invariants do not cover (the Byzantine
	// simulation), or -1: its holding, its grants and its payloads are its
	// own business.
	faulty int
	// exclusionOnly checks mutual exclusion and nothing else (for broken
	// variants that must be caught by it).
	exclusionOnly bool
	// strict starts the grant order afresh only when no live Machine's
	// clock reaches the greatest grant, cascades of restarts or not.
	strict bool
}

func newChecker(n int) *checker { return &checker{held: make([]bool, n), faulty: -1} }

func (k *checker) clone() *checker {
	d := *k
	d.held = append([]bool(nil), k.held...)
	return &d
}

// check verifies the invariants in the cluster's current state.
func (k *checker) check(c *cluster) error {
	var holders []string
	for i, m := range c.ms {
		if m.Held() && i != k.faulty {
			holders = append(holders, c.ids[i])
		}
	}
	if len(holders) > 1 {
		return fmt.Errorf("mutual exclusion violated: %s hold the lock at once", strings.Join(holders, " and "))
	}
	if k.exclusionOnly {
		return nil
	}
	for i, m := range c.ms {
		if m.Held() && !k.held[i] && i != k.faulty {
			tok, _ := m.Own()
			if k.haveMax && !k.maxTok.Less(tok) {
				return fmt.Errorf("grant order violated: %s enters with %v after %v was granted", c.ids[i], tok, k.maxTok)
			}
			k.maxTok, k.haveMax = tok, true
			k.grants++
			for q := range c.ids {
				if q == k.faulty {
					continue
				}
				for _, e := range c.links[q][i] {
					if e.msg.Kind == Release && e.msg.Payload != nil && e.destInc == c.inc[i] {
						return fmt.Errorf("update-before-release violated: %s enters with %v before handling %v",
							c.ids[i], tok, e.msg)
					}
				}
			}
		}
		k.held[i] = m.Held()
	}
	return nil
}

// crashed tells the checker that peer p restarted.
func (k *checker) crashed(c *cluster, p int) {
	k.held[p] = false
	if !k.haveMax {
		return
	}
	known := false
	for q, m := range c.ms {
		if q != p && !m.Synced() && !k.strict {
			known = false // a cascade: see the grant order rule above
			break
		}
		known = known || (q != p && m.Clock() >= k.maxTok.Clock)
	}
	if known {
		return
	}
	k.haveMax = false
	k.resets++
}

// outstanding reports whether m has a request in any state: held back,
// waiting, held, or withdrawn under Ricart-Agrawala but not yet released.
// When nothing more can happen, none may be left.
func outstanding(m *Machine) bool { return m.state != idle }

// TestCheckersCatchBrokenVariants runs the walks and explorations of the
// broken variants in the scenario table: each must fail, with the violation
// the row names. Machines that enter without waiting for a later message
// from every peer, links that reorder, honest Machines whose clocks wrap,
// and chain holders that append without a sync round.
func TestCheckersCatchBrokenVariants(t *testing.T) {
	for i := range scenarios {
		sc := &scenarios[i]
		if sc.variant == variantNone {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			var err error
			if sc.explore {
				x := newExplorer(sc)
				err = x.run()
				if err != nil {
					t.Logf("after %d states: %v", x.states(), err)
				}
			} else {
				err = firstFailingSeed(t, sc)
			}
			switch {
			case err == nil:
				t.Fatalf("%v went uncaught", sc.variant)
			case !strings.Contains(err.Error(), sc.want):
				t.Fatalf("%v: want a violation containing %q, got: %v", sc.variant, sc.want, err)
			}
		})
	}
}

// firstFailingSeed runs sc's seeds and returns the first failure.
func firstFailingSeed(t *testing.T, sc *scenario) error {
	for seed := uint64(1); seed <= uint64(sc.seeds); seed++ {
		if steps, err := runWalk(sc, seed, sc.steps, nil); err != nil {
			t.Logf("seed %d, step %d: %v", seed, steps, err)
			return err
		}
	}
	return nil
}
