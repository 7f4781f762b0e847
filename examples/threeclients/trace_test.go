package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

// testBatch is a release payload of n blocks, 1 -> 2 amount 1 each.
func testBatch(t *testing.T, n int) ([]byte, []ledger.Block) {
	t.Helper()
	var blocks []ledger.Block
	prev := ledger.Hash{1}
	for i := range n {
		b := ledger.Block{Height: uint64(i + 1), Prev: prev, Clock: uint64(i + 1),
			Transfer: ledger.Transfer{ID: ledger.TransferID{byte(i + 1)}, From: "1", To: "2", Amount: 1}}
		b.Hash = b.ComputeHash()
		blocks = append(blocks, b)
		prev = b.Hash
	}
	payload, err := ledger.EncodeBatch(blocks)
	if err != nil {
		t.Fatal(err)
	}
	return payload, blocks
}

func TestFormatTrace(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 1, 234_000_000, time.UTC)
	one, blocks := testBatch(t, 1)
	five, _ := testBatch(t, 5)
	msg := func(k lamportmutex.Kind, from, to string, clock uint64) lamportmutex.Message {
		return lamportmutex.Message{Kind: k, From: from, To: to, Clock: clock}
	}
	rel := msg(lamportmutex.Release, "1", "2", 10)
	rel.Payload = five
	relIn := msg(lamportmutex.Release, "2", "1", 10)
	relIn.Payload = one
	for _, tc := range []struct {
		ev   lamportmutex.Event
		same bool
		want string
	}{
		{lamportmutex.Event{Message: msg(lamportmutex.Request, "2", "1", 5), Before: 4, Clock: 6},
			false, "12:00:01.234 received REQUEST@5 from 2: clock 4 -> 6 (max(4, 5) + 1)"},
		{lamportmutex.Event{Message: msg(lamportmutex.Reply, "2", "1", 3), Before: 8, Clock: 9},
			false, "12:00:01.234 received REPLY@3 from 2: clock 8 -> 9 (max(8, 3) + 1)"},
		{lamportmutex.Event{Sent: true, Message: msg(lamportmutex.Reply, "1", "2", 7), Before: 6, Clock: 7},
			false, "12:00:01.234 sent REPLY@7 to 2"},
		{lamportmutex.Event{Sent: true, Message: msg(lamportmutex.Request, "1", "3", 3), Before: 9, Clock: 9},
			false, "12:00:01.234 sent REQUEST@3 to 3 (resent with its original stamp; clock stays 9)"},
		{lamportmutex.Event{Sent: true, Message: lamportmutex.Message{Kind: lamportmutex.Release, From: "1", To: "2", Clock: 4}, Before: 6, Clock: 6},
			false, "12:00:01.234 sent RELEASE@4 to 2 (held back since the release, sent with the next message to it; clock stays 6)"},
		{lamportmutex.Event{Message: lamportmutex.Message{Kind: lamportmutex.Data, From: "2", To: "1", Clock: 11, Payload: []byte("xyz")}, Before: 9, Clock: 9},
			false, "12:00:01.234 received DATA from 2 (ledger catch-up, 3 bytes, clock unchanged at 9)"},
		{lamportmutex.Event{Sent: true, Message: lamportmutex.Message{Kind: lamportmutex.Data, From: "1", To: "2", Clock: 9}, Before: 9, Clock: 9},
			false, "12:00:01.234 sent DATA to 2 (ledger catch-up, 0 bytes, clock unchanged at 9)"},
		{lamportmutex.Event{Message: lamportmutex.Message{Kind: lamportmutex.PeerUp, From: "2", To: "1", Incarnation: 77}, Before: 3, Clock: 3},
			false, "12:00:01.234 peer 2 is up (new incarnation 77): forget its old request, greet it with HELLO; clock unchanged at 3"},
		{lamportmutex.Event{Before: 5, Clock: 6},
			false, "12:00:01.234 local event: clock 5 -> 6 (a release or withdrawal that sent nothing yet)"},
		{lamportmutex.Event{Sent: true, Message: rel, Before: 9, Clock: 10},
			false, "12:00:01.234 sent RELEASE@10 to 2 with 5 blocks: #1 " + blocks[0].Hash.Short() + " 1 -> 2 amount 1, #2 "},
		{lamportmutex.Event{Sent: true, Message: rel, Before: 10, Clock: 10},
			true, "12:00:01.234 sent RELEASE@10 to 2 with the same 5 blocks"},
		{lamportmutex.Event{Message: relIn, Before: 3, Clock: 11},
			false, "12:00:01.234 received RELEASE@10 from 2: clock 3 -> 11 (max(3, 10) + 1) with 1 block: #1 " + blocks[0].Hash.Short() + " 1 -> 2 amount 1"},
		{lamportmutex.Event{Message: msg(lamportmutex.Hello, "2", "1", lamportmutex.MaxClock), Before: lamportmutex.MaxClock, Clock: lamportmutex.MaxClock},
			false, "12:00:01.234 received HELLO@9223372036854775808 from 2: clock 9223372036854775808 -> 9223372036854775808"},
	} {
		got := formatTrace(tc.ev, now, tc.same)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("formatTrace(%+v):\n got %q\nwant %q", tc.ev, got, tc.want)
		}
	}
	if got := formatTrace(lamportmutex.Event{Sent: true, Message: rel, Before: 9, Clock: 10}, now, false); !strings.HasSuffix(got, ", and 2 more") ||
		strings.Count(got, "#") != traceBlocksShown {
		t.Errorf("a release of 5 blocks: %q, want %d blocks listed and the rest counted", got, traceBlocksShown)
	}
}

func TestDescribeBatchBadPayload(t *testing.T) {
	got := describeBatch([]byte("not a batch"), false)
	if !strings.HasPrefix(got, "with a 11-byte payload that is not a batch of blocks: ") {
		t.Errorf("describeBatch(garbage) = %q", got)
	}
}

func TestLinePrefix(t *testing.T) {
	for _, tc := range []struct {
		id    string
		clock uint64
		want  string
	}{
		{"1", 0, "[1 @0] "},
		{"3", 12, "[3 @12] "},
		{"a b", 5, `["a b" @5] `},
	} {
		if got := linePrefix(tc.id, tc.clock); got != tc.want {
			t.Errorf("linePrefix(%q, %d) = %q, want %q", tc.id, tc.clock, got, tc.want)
		}
	}
}

// TestPeerViewObserve: every transition is reported, a bounce between two
// looks included, and half a connection changes nothing.
func TestPeerViewObserve(t *testing.T) {
	st := func(out, in bool, restarts, reconnects uint64) transport.PeerStatus {
		return transport.PeerStatus{ID: "3", Connected: out, Inbound: in, Restarts: restarts, Reconnects: reconnects}
	}
	var v peerView
	for i, step := range []struct {
		st   transport.PeerStatus
		want peerChange
		up   bool
	}{
		{st(false, false, 0, 0), peerChange{}, false}, // not yet seen: nothing to say
		{st(true, false, 0, 0), peerChange{}, false},  // half up
		{st(true, true, 0, 0), peerChange{}, true},    // first contact: "all peers connected" says it
		{st(false, true, 0, 0), peerChange{}, true},   // half down
		{st(false, false, 0, 0), peerChange{down: true}, false},
		{st(false, false, 0, 0), peerChange{}, false}, // still down
		{st(true, true, 1, 1), peerChange{back: true, restarted: true}, true},
		{st(true, true, 1, 2), peerChange{down: true, back: true}, true}, // reconnected between two looks
		{st(true, true, 2, 3), peerChange{down: true, back: true, restarted: true}, true},
		{st(true, true, 2, 3), peerChange{}, true},
		{st(false, false, 2, 3), peerChange{down: true}, false},
		{st(true, true, 2, 4), peerChange{back: true}, true}, // the same process, reconnected
	} {
		if got := v.observe(step.st); got != step.want || v.up != step.up {
			t.Errorf("step %d %+v: change %+v up %v, want %+v up %v", i, step.st, got, v.up, step.want, step.up)
		}
	}
}
