package lamportmutex

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// byzantineConfigFor derives a Byzantine run's configuration from its
// seed: 3 to 5 members, one of them faulty, crashes of the honest ones in
// two runs out of three (the faulty one restarts in every run).
func byzantineConfigFor(seed uint64) simConfig {
	return simConfig{n: 3 + int(seed%3), steps: 300, crashes: seed%3 != 0, byzantine: true}
}

// TestSimulationByzantine runs the seeded simulation with one faulty
// member that, besides following the algorithm, sends arbitrary messages
// (injectByzantine). After every step no two honest members may hold the
// lock at once, and the grant order and update-before-release hold among
// them. At the end of each seed the faulty member restarts as an honest
// incarnation; then every request must be granted (liveness) and no clock
// may have come within 2^62 of MaxClock. LAMPORT_BYZANTINE_SEED=n replays one seed with a narrated trace
// (with LAMPORT_RA=1 under Ricart-Agrawala); LAMPORT_SOAK=steps runs seeds
// until that many steps have been simulated.
func TestSimulationByzantine(t *testing.T) {
	if seed, ok := envUint(t, "LAMPORT_BYZANTINE_SEED"); ok {
		cfg := byzantineConfigFor(seed)
		cfg.ra = os.Getenv("LAMPORT_RA") != ""
		var trace strings.Builder
		steps, err := runSim(seed, cfg, func(f string, a ...any) { fmt.Fprintf(&trace, f+"\n", a...) })
		t.Logf("seed %d, %+v, %d steps:\n%s", seed, cfg, steps, trace.String())
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		return
	}
	t.Run("lamport", func(t *testing.T) { runByzantine(t, false, 400) })
	t.Run("ricart-agrawala", func(t *testing.T) { runByzantine(t, true, 200) })
}

func runByzantine(t *testing.T, ra bool, normalSeeds uint64) {
	seeds, total := uint64(0), 0
	soak, isSoak := envUint(t, "LAMPORT_SOAK")
	start := time.Now()
	for seed := uint64(1); ; seed++ {
		if isSoak && uint64(total) >= soak || !isSoak && seed > normalSeeds {
			break
		}
		cfg := byzantineConfigFor(seed)
		cfg.ra = ra
		if isSoak {
			cfg.steps = 2000
		}
		steps, err := runSim(seed, cfg, nil)
		total += steps
		seeds++
		if err != nil {
			t.Fatalf("seed %d (%+v): %v\n\treplay: LAMPORT_RA=%s LAMPORT_BYZANTINE_SEED=%d go test ./lamportmutex -run 'TestSimulationByzantine$' -v",
				seed, cfg, err, map[bool]string{true: "1"}[ra], seed)
		}
	}
	t.Logf("%d seeds, %d steps simulated in %v", seeds, total, time.Since(start).Round(time.Millisecond))
}

// TestCheckerCatchesClockWrap runs the Byzantine simulation against
// honest Machines that apply a clock above MaxClock, or more than
// MaxClockStep above their own, with the receive rule max(clock, c)+1,
// which wraps for 2^64-1, instead of refusing it. The checker, checking
// mutual exclusion only, must find two honest holders.
func TestCheckerCatchesClockWrap(t *testing.T) {
	for seed := uint64(1); seed <= 2000; seed++ {
		cfg := byzantineConfigFor(seed)
		cfg.wraps = true
		steps, err := runSim(seed, cfg, nil)
		if err == nil {
			continue
		}
		if !strings.Contains(err.Error(), "mutual exclusion violated") {
			t.Fatalf("seed %d: want a mutual exclusion violation, got: %v", seed, err)
		}
		t.Logf("seed %d, step %d: %v", seed, steps, err)
		return
	}
	t.Fatal("no violation found over 2000 seeds with wrapping clocks")
}
