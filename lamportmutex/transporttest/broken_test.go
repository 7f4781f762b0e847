package transporttest_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lamportledger/lamportledger/lamportmutex/transporttest"
)

// brokenEnv names, in a child process, the broken mode to run the suite
// against.
const brokenEnv = "TRANSPORTTEST_BROKEN_MODE"

func TestMain(m *testing.M) {
	if os.Getenv(brokenEnv) != "" {
		// A broken transport may leave goroutines blocked for good (a Send
		// that blocks); the parent checks only that the suite fails.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// brokenModes are the reference transport's broken variants, each with the
// subtests that must catch it.
var brokenModes = []struct {
	mode     string
	caughtBy []string
}{
	{"reorder", []string{"ReliableFIFO"}},
	{"duplicate", []string{"ReliableFIFO"}},
	{"drop", []string{"ReliableFIFO"}},
	{"latePeerUp", []string{"PeerUpBeforeFirstMessage", "RestartDeadIncarnation"}},
	{"forgeFrom", []string{"ReliableFIFO"}},
	{"queueRefused", []string{"SendNeverBlocks"}},
	{"overlap", []string{"DeliveriesPerPeerNeverOverlap"}},
	{"blockingSend", []string{"SendNeverBlocks"}},
	{"mixedBatch", []string{"SendBatch"}},
	{"partialBatch", []string{"SendBatch"}},
	{"keepsPayload", []string{"ReliableFIFO", "SendBatch"}},
	{"keepsBatch", []string{"ReliableFIFO", "SendBatch"}},
	{"dataFullBound", []string{"DataHalfBound"}},
	{"flushEarly", []string{"FlushHonoursContext"}},
	{"deliverAfterClose", []string{"CloseWaitsForDeliver"}},
	{"sendAfterClose", []string{"AfterClose"}},
	{"quarantineIgnored", []string{"Quarantine"}},
	{"noPeerUpAfterRestart", []string{"RestartPeerUp", "RestartDeadIncarnation"}},
	{"deadAfterPeerUp", []string{"RestartDeadIncarnation"}},
	{"peerUpOnReconnect", []string{"CutHeal"}},
	{"dropOnCut", []string{"CutMidStream"}},
	{"peerDownFirst", []string{"Identity"}},
	{"peerDownTwice", []string{"CutHeal"}},
}

// TestBrokenTransportsFail runs the suite against each broken variant of
// the reference transport and checks that the subtests meant to catch it
// fail. Each variant runs in a child process (this test binary, running
// TestBrokenVariant), so that its failures are real failures of a real
// *testing.T, and whatever it leaves blocked dies with the child.
//
// A few violations (a delivery after Close, after Quarantine) can only be
// seen if the transport commits them within the suite's short window, which
// a loaded machine can miss; so a variant gets up to three runs.
func TestBrokenTransportsFail(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("in a child process")
	}
	const runs = 3
	for _, b := range brokenModes {
		t.Run(b.mode, func(t *testing.T) {
			t.Parallel()
			var missed []string
			var out []byte
			for range runs {
				missed, out = runBroken(t, b.mode, b.caughtBy)
				if len(missed) == 0 {
					return
				}
			}
			t.Errorf("subtests %v did not fail for %q in %d runs; the last:\n%s", missed, b.mode, runs, out)
		})
	}
}

// runBroken runs the subtests named by caughtBy against broken mode in a
// child process, and returns those that did not fail, with its output.
func runBroken(t *testing.T, mode string, caughtBy []string) ([]string, []byte) {
	run := "^TestBrokenVariant$/^(" + strings.Join(caughtBy, "|") + ")$"
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), brokenEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	var missed []string
	for _, sub := range caughtBy {
		failed := regexp.MustCompile(`--- FAIL: TestBrokenVariant/` + sub + ` `)
		if err == nil || !failed.Match(out) {
			missed = append(missed, sub)
		}
	}
	if len(missed) > 0 {
		t.Logf("run of %q: %v not caught", mode, missed)
	}
	return missed, out
}

// TestBrokenVariant runs the suite against the broken mode named by the
// environment; TestBrokenTransportsFail runs it in a child process.
func TestBrokenVariant(t *testing.T) {
	mode := os.Getenv(brokenEnv)
	if mode == "" {
		t.Skip("run by TestBrokenTransportsFail in a child process")
	}
	transporttest.Run(t, func(t *testing.T, ids []string) transporttest.Network {
		net := newRefNet(t, ids, mode).network()
		net.Timeout = 3 * time.Second // only turns the hangs it must cause into failures
		return net
	})
}
