package lamportmutex

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// simConfig is one kind of simulation run.
type simConfig struct {
	n       int  // peers
	steps   int  // random steps before the liveness phase
	crashes bool // peers crash and restart
	reorder bool // fault: links deliver any queued message (checker checks only)
	broken  bool // fault: Machines ignore the latest rule (checker checks only)
	ra      bool // the Machines run Ricart-Agrawala
	noSync  bool // fault (chain simulation): holders append without a sync round
	// byzantine: one member (seed-chosen) also sends arbitrary messages;
	// honest members quarantine it on a violation. The checker covers the
	// honest members only. After the random steps the faulty member
	// restarts as an honest incarnation, and liveness is owed again.
	byzantine bool
	wraps     bool // fault (Byzantine runs): honest Machines wrap their clocks (checker checks only)
}

// simConfigFor derives a run's configuration from its seed, so that a seed
// alone replays it: N from 2 to 5, crashes in two runs out of three.
func simConfigFor(seed uint64) simConfig {
	return simConfig{n: 2 + int(seed%4), steps: 150, crashes: seed%3 != 0}
}

// runSim runs one seeded simulation and returns the number of steps taken.
// Every step is followed by the checker. After cfg.steps random steps, no
// new requests or crashes happen: holders release and every message is
// delivered, and then no request may be left outstanding (liveness). If
// logf is set, every event is narrated to it.
func runSim(seed uint64, cfg simConfig, logf func(string, ...any)) (int, error) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c, err := newCluster(peerIDs(cfg.n), cfg.broken, true, cfg.options()...)
	if err != nil {
		return 0, err
	}
	c.logf = logf
	k := newChecker(cfg.n)
	if cfg.byzantine {
		c.faulty = int(seed/4) % cfg.n
		k.faulty = c.faulty
		c.wraps, k.exclusionOnly = cfg.wraps, cfg.wraps
	}
	entries := make([]int, cfg.n)
	crashPct := 0
	if cfg.crashes {
		crashPct = 1 + rng.IntN(4)
	}
	deliver := func() (bool, error) {
		f, t, ok := c.randomLink(rng)
		if !ok {
			return false, nil
		}
		i := 0
		if cfg.reorder {
			i = rng.IntN(len(c.links[f][t]))
		}
		return true, c.deliver(f, t, i)
	}
	release := func(p int) error {
		entries[p]++
		return c.release(p, fmt.Appendf(nil, "%s:%d:%d", c.ids[p], c.inc[p], entries[p]))
	}
	pick := func(ok func(*Machine) bool) int {
		start := rng.IntN(cfg.n)
		for i := range cfg.n {
			p := (start + i) % cfg.n
			if ok(c.ms[p]) {
				return p
			}
		}
		return -1
	}
	crashFaulty := func() error {
		if err := c.crashRandomly(rng, c.faulty); err != nil {
			return err
		}
		k.crashed(c, c.faulty)
		return nil
	}
	step := func() error {
		if c.faulty >= 0 {
			switch r := rng.IntN(100); {
			case r < 10:
				injectByzantine(c, rng)
				return nil
			case r < 13:
				return crashFaulty()
			}
		}
		r := rng.IntN(100)
		switch {
		case r < 58:
		case r < 75:
			if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
				return c.request(p)
			}
		case r < 88:
			if p := c.holder(); p >= 0 {
				return release(p)
			}
		case r < 92:
			if p := pick(func(m *Machine) bool { return m.Requesting() && !m.Held() }); p >= 0 {
				return c.release(p, nil)
			}
		case r < 92+crashPct:
			p := rng.IntN(cfg.n)
			if err := c.crashRandomly(rng, p); err != nil {
				return err
			}
			k.crashed(c, p)
			return nil
		}
		if ok, err := deliver(); ok || err != nil {
			return err
		}
		if p := pick(func(m *Machine) bool { return !m.Requesting() }); p >= 0 {
			return c.request(p)
		}
		p := c.holder()
		if p < 0 && c.faulty >= 0 {
			// Stalled, as a faulty member may make the group: its
			// restart ends the quarantines.
			return crashFaulty()
		}
		if p < 0 {
			return fmt.Errorf("deadlock: every peer requests, none holds, no message in flight")
		}
		return release(p)
	}
	if c.faulty >= 0 && !c.wraps {
		// The faulty member stops misbehaving: it restarts as an honest
		// incarnation, and from then on every honest request is owed a grant.
		c.reform = func() error {
			c.reformed = true
			return crashFaulty()
		}
	}
	return simulate(c, k, cfg.steps, 100_000, step, release, deliver)
}

// simulate runs a simulation's two phases over c, checking k after every
// step: cfg steps of step(), then c.reform if set, then, with no new
// requests, holders release and every message is delivered (at most quiet
// steps). Then nothing may be outstanding, every Machine must be synced with
// an empty queue, and every message sent must be accounted for. With a
// faulty member that has not reformed, liveness is not owed; once it has,
// it is, and no clock may have come within 2^62 of MaxClock.
func simulate(c *cluster, k *checker, steps, quiet int, step func() error, release func(p int) error, deliver func() (bool, error)) (int, error) {
	n := 0
	for ; n < steps; n++ {
		if err := step(); err != nil {
			return n, fmt.Errorf("step %d: %w", n, err)
		}
		if err := k.check(c); err != nil {
			return n, fmt.Errorf("step %d: %w", n, err)
		}
	}
	if c.reform != nil {
		if err := c.reform(); err != nil {
			return n, fmt.Errorf("step %d: %w", n, err)
		}
	}
	for limit := n + quiet; ; n++ {
		if n >= limit {
			return n, fmt.Errorf("step %d: liveness: still busy after %d quiet steps", n, quiet)
		}
		var err error
		if p := c.holder(); p >= 0 {
			err = release(p)
		} else if ok, derr := deliver(); derr != nil {
			err = derr
		} else if !ok {
			break
		}
		if err == nil {
			err = k.check(c)
		}
		if err != nil {
			return n, fmt.Errorf("step %d: %w", n, err)
		}
	}
	for i, m := range c.ms {
		if c.faulty >= 0 && !c.reformed {
			break // a faulty member may stall the group while it misbehaves
		}
		if c.faulty >= 0 && m.clock >= 1<<62 {
			return n, fmt.Errorf("step %d: %s's clock came within 2^62 of the top: %s", n, c.ids[i], machineString(m))
		}
		if outstanding(m) {
			return n, fmt.Errorf("step %d: liveness violated: all quiet but %s", n, machineString(m))
		}
		if !m.Synced() || len(m.q) != 0 {
			return n, fmt.Errorf("step %d: quiet but %s", n, machineString(m))
		}
	}
	if len(c.flight) != 0 {
		return n, fmt.Errorf("step %d: %d messages unaccounted for", n, len(c.flight))
	}
	return n, nil
}

// injectByzantine makes the faulty member send one arbitrary message to an
// honest member: any kind, valid or not (but not PeerUp, which only a
// transport makes), clocks from 0 to 2^64-1 with the edges around MaxClock,
// the right or a forged incarnation, payloads where none belongs,
// releases without requests, and now and then another member's id as the
// recipient.
func injectByzantine(c *cluster, rng *rand.Rand) {
	b := c.faulty
	q := rng.IntN(len(c.ids) - 1)
	if q >= b {
		q++
	}
	kinds := []Kind{Request, Reply, Release, Hello, Data, 0, Data + 1, 255}
	msg := Message{Kind: kinds[rng.IntN(len(kinds))], From: c.ids[b], To: c.ids[q]}
	switch r := rng.IntN(400); {
	case r < 80:
		msg.Clock = 0
	case r < 200:
		msg.Clock = uint64(rng.IntN(30))
	case r < 280:
		msg.Clock = c.ms[q].clock + uint64(rng.IntN(3))
	case r < 285: // accepted: a jump far beyond honest progress
		msg.Clock = c.ms[q].clock + MaxClockStep>>12
	case r < 290: // refused: past the most one message may move a clock,
		// even after q's clock has moved on by the time it arrives
		msg.Clock = c.ms[q].clock + 2*MaxClockStep + uint64(rng.IntN(2))
	case r < 300: // refused unless a clock is already near the top
		msg.Clock = MaxClock - 50 - uint64(rng.IntN(52))
	case r < 340:
		msg.Clock = MaxClock + 1
	default:
		msg.Clock = 1<<64 - 1
	}
	switch r := rng.IntN(10); {
	case r < 7:
		msg.Incarnation = uint64(c.inc[q])
	case r < 8:
		msg.Incarnation = uint64(c.inc[q]) + 1
	case r < 9:
		msg.Incarnation = 1<<64 - 1
	}
	if rng.IntN(3) == 0 {
		msg.Payload = []byte("forged")
	}
	if rng.IntN(20) == 0 {
		msg.To = c.ids[rng.IntN(len(c.ids))]
	}
	c.say("%s (faulty) injects %s", c.ids[b], narrate(msg))
	c.links[b][q] = append(c.links[b][q], c.envelope(msg, q))
}

// simReplayHint tells how to replay a failing seed with a narrated trace.
func simReplayHint(seed uint64, steps int) string {
	return fmt.Sprintf("replay: LAMPORT_SEED=%d LAMPORT_STEPS=%d go test ./lamportmutex -run 'TestSimulation$' -v", seed, steps)
}

// envUint reads a numeric environment variable; ok is false if unset.
func envUint(t *testing.T, name string) (uint64, bool) {
	s := os.Getenv(name)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v, true
}

// TestSimulation runs seeded random simulations of 2 to 5 Machines with
// crashes and restarts. LAMPORT_SEED=n replays one seed with a narrated
// trace; LAMPORT_SOAK=steps runs seeds until that many steps have been
// simulated.
func TestSimulation(t *testing.T) {
	if seed, ok := envUint(t, "LAMPORT_SEED"); ok {
		cfg := simConfigFor(seed)
		cfg.ra = os.Getenv("LAMPORT_RA") != ""
		if n, ok := envUint(t, "LAMPORT_STEPS"); ok {
			cfg.steps = int(n)
		}
		var trace strings.Builder
		steps, err := runSim(seed, cfg, func(f string, a ...any) {
			fmt.Fprintf(&trace, f+"\n", a...)
		})
		t.Logf("seed %d, %+v, %d steps:\n%s", seed, cfg, steps, trace.String())
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		return
	}
	const normalSeeds = 2000
	seeds, total := uint64(0), 0
	soak, isSoak := envUint(t, "LAMPORT_SOAK")
	start := time.Now()
	for seed := uint64(1); ; seed++ {
		if isSoak && uint64(total) >= soak || !isSoak && seed > normalSeeds {
			break
		}
		cfg := simConfigFor(seed)
		if isSoak {
			cfg.steps = 2000
		}
		steps, err := runSim(seed, cfg, nil)
		total += steps
		seeds++
		if err != nil {
			t.Fatalf("seed %d (%+v): %v\n%s", seed, cfg, err, simReplayHint(seed, cfg.steps))
		}
	}
	t.Logf("%d seeds, %d steps simulated in %v", seeds, total, time.Since(start).Round(time.Millisecond))
}

func (cfg simConfig) options() []MachineOption {
	var opts []MachineOption
	if cfg.ra {
		opts = append(opts, WithAlgorithm(RicartAgrawala))
	}
	if cfg.wraps {
		opts = append(opts, unguarded)
	}
	return opts
}

// TestSimulationRicartAgrawala runs the same simulation, crashes included,
// over Machines running Ricart-Agrawala. Replay a seed with LAMPORT_RA=1
// LAMPORT_SEED=n go test ./lamportmutex -run 'TestSimulation$' -v.
func TestSimulationRicartAgrawala(t *testing.T) {
	seeds := uint64(1000)
	if testing.Short() {
		seeds = 100
	}
	if n, ok := envUint(t, "LAMPORT_RA_SEEDS"); ok { // a longer search
		seeds = n
	}
	total := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		cfg := simConfigFor(seed)
		cfg.ra = true
		steps, err := runSim(seed, cfg, nil)
		total += steps
		if err != nil {
			t.Fatalf("seed %d (%+v): %v\n\treplay: LAMPORT_RA=1 LAMPORT_SEED=%d LAMPORT_STEPS=%d go test ./lamportmutex -run 'TestSimulation$' -v",
				seed, cfg, err, seed, cfg.steps)
		}
	}
	t.Logf("%d seeds, %d steps simulated", seeds, total)
}
