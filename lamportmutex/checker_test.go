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
			tok := m.own
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
		if q != p && !m.Synced() {
			known = false // a cascade: see the grant order rule above
			break
		}
		known = known || (q != p && m.clock >= k.maxTok.Clock)
	}
	if known {
		return
	}
	k.haveMax = false
	k.resets++
}

// TestCheckerCatchesSkipLatest runs the simulation and the explorer over
// Machines that enter as soon as their request heads their queue, without a
// later message from every peer. Both must report a violation.
func TestCheckerCatchesSkipLatest(t *testing.T) {
	t.Run("simulation/ricart-agrawala", func(t *testing.T) {
		seed, err := firstFailingSeed(simConfig{n: 3, steps: 200, broken: true, ra: true})
		if err == nil {
			t.Fatal("simulation found no violation with Ricart-Agrawala entering before every REPLY")
		}
		t.Logf("seed %d: %v", seed, err)
	})
	t.Run("simulation", func(t *testing.T) {
		seed, err := firstFailingSeed(simConfig{n: 3, steps: 200, broken: true})
		if err == nil {
			t.Fatal("simulation found no violation with skipLatest set")
		}
		t.Logf("seed %d: %v", seed, err)
	})
	t.Run("explorer", func(t *testing.T) {
		x := &explorer{n: 2, budget: 1, broken: true}
		err := x.run()
		if err == nil {
			t.Fatalf("explorer found no violation with skipLatest set (%d states)", len(x.seen))
		}
		t.Logf("after %d states: %v", len(x.seen), err)
	})
}

// TestCheckerCatchesReordering runs the simulation and the explorer over a
// network whose links may deliver any queued message, not only the head.
// Both must report a violation.
func TestCheckerCatchesReordering(t *testing.T) {
	t.Run("simulation", func(t *testing.T) {
		seed, err := firstFailingSeed(simConfig{n: 3, steps: 200, reorder: true})
		if err == nil {
			t.Fatal("simulation found no violation over reordering links")
		}
		t.Logf("seed %d: %v", seed, err)
	})
	t.Run("explorer", func(t *testing.T) {
		x := &explorer{n: 2, budget: 1, reorder: true}
		err := x.run()
		if err == nil {
			t.Fatalf("explorer found no violation over reordering links (%d states)", len(x.seen))
		}
		t.Logf("after %d states: %v", len(x.seen), err)
	})
}

// firstFailingSeed runs seeds 1..500 of cfg and returns the first failure.
func firstFailingSeed(cfg simConfig) (uint64, error) {
	for seed := uint64(1); seed <= 500; seed++ {
		if _, err := runSim(seed, cfg, nil); err != nil {
			return seed, err
		}
	}
	return 0, nil
}

// outstanding reports whether m has a request in any state: held back,
// waiting, held, or withdrawn under Ricart-Agrawala but not yet released.
// When nothing more can happen, none may be left.
func outstanding(m *Machine) bool { return m.state != idle }
