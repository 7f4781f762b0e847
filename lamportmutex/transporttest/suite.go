// Package transporttest checks that a lamportmutex.Transport keeps the
// whole of the Transport contract. A transport's own test calls Run with a
// Factory that builds a group of connected transports:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T, ids []string) transporttest.Network {
//			net := newMyNetwork(t, ids) // closed by a t.Cleanup of its own
//			return transporttest.Network{Transports: net.Transports()}
//		})
//	}
//
// Run runs one subtest per obligation, each on a fresh Network. Subtests
// that need a capability the Network does not offer (Restart, Cut and Heal)
// skip and say which one.
//
// The suite never asserts on elapsed time. It waits for what the contract
// says must happen, and turns a wait that exceeds Network.Timeout into a
// failure (a hang: a lost message, a blocked Send, a deadlock). Where the
// contract forbids something (a delivery after Close, a message from a
// quarantined incarnation), the suite gives the transport a short chance to
// do it; a slow machine can then miss a violation, but never reports one
// that did not happen.
//
// The queue-bound subtests send up to 128 MiB to a peer that does not
// read, waiting for ErrQueueFull; a Factory should configure a bound of a
// few MiB at most.
//
// The suite is checked itself: its own tests run it against a small
// in-memory reference transport, which must pass, and against broken
// variants of that transport (reordering, duplicating, dropping, a late
// PeerUp, overlapping deliveries, a Send that blocks, and more), each in a
// child process of the test binary, where the subtests meant to catch each
// must fail.
package transporttest

import (
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// DefaultTimeout is how long the suite waits for anything the transport
// should do, when Network.Timeout is zero.
const DefaultTimeout = 20 * time.Second

// Factory makes a fresh Network of the peers named by ids (distinct,
// non-empty). It registers with t.Cleanup whatever it must release (the
// network, listeners); the suite closes every transport it started before
// those cleanups run. It reports its own failures with t.Fatal.
type Factory func(t *testing.T, ids []string) Network

// Network is a group of transports that can reach one another, and what
// the suite may do to them. Only Transports is required; a nil capability
// makes the subtests that need it skip.
type Network struct {
	// Transports holds one transport per id, in the order of the ids given
	// to the Factory, none of them started. Every Transport's ID is its id.
	Transports []lamportmutex.Transport

	// Restart, if set, ends the current incarnation of peer id as a crash
	// would (nothing is flushed; the suite never uses that transport
	// again) and returns the peer's next incarnation, not started, whose
	// Incarnation is larger.
	Restart func(id string) (lamportmutex.Transport, error)

	// Cut, if set, stops every message between peers a and b, in both
	// directions, until Heal(a, b): the transports see their connection
	// lost (for TCP, the connections break and cannot be made again).
	// Heal must be set with it.
	Cut  func(a, b string) error
	Heal func(a, b string) error

	// Timeout is how long the suite waits for anything the transports
	// should do before it calls them hung; zero means DefaultTimeout. It is
	// never an expectation of speed.
	Timeout time.Duration
}

// Run checks the Transport contract on networks made by f, one subtest per
// obligation.
func Run(t *testing.T, f Factory) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(newSuite(t, f))
		})
	}
}

// A testCase checks one obligation of the contract.
type testCase struct {
	name string
	run  func(s *suite)
}

// cases lists the obligations in the order of the contract's text.
var cases = []testCase{
	{"Identity", testIdentity},
	{"SendRefuses", testSendRefuses},
	{"MaxPayload", testMaxPayload},
	{"PeerUpBeforeFirstMessage", testPeerUpFirst},
	{"ReliableFIFO", testReliableFIFO},
	{"DeliveriesPerPeerNeverOverlap", testNoOverlap},
	{"BlockedDeliverHoldsOnlyItsPeer", testBlockedDeliver},
	{"SendFromDeliver", testSendFromDeliver},
	{"SendNeverBlocks", testSendNeverBlocks},
	{"SendBatch", testSendBatch},
	{"DataHalfBound", testDataHalfBound},
	{"FlushWaitsForDelivery", testFlushWaits},
	{"FlushHonoursContext", testFlushContext},
	{"CloseFlushes", testCloseFlushes},
	{"CloseWaitsForDeliver", testCloseWaitsForDeliver},
	{"AfterClose", testAfterClose},
	{"HeldForClosedPeerCountsToBound", testHeldForClosedPeer},
	{"Quarantine", testQuarantine},
	{"RestartPeerUp", testRestartPeerUp},
	{"RestartDeadIncarnation", testRestartDeadIncarnation},
	{"QuarantineThenRestart", testQuarantineThenRestart},
	{"CutHeal", testCutHeal},
	{"CutMidStream", testCutMidStream},
	{"CutHeldCountsToBound", testCutBound},
}
