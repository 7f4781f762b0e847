package main

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestParseCounts pins the transfer counts -transfers accepts.
func TestParseCounts(t *testing.T) {
	got, err := parseCounts("10k, 100k,1M,7")
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{10_000, 100_000, 1_000_000, 7}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "k", "1.5M", "101M", "1G", "9223372036854775807M"} {
		if v, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) = %v, want an error", bad, v)
		}
	}
}

// TestTransferRoundTrip checks that a decoded transfer is the encoded one.
func TestTransferRoundTrip(t *testing.T) {
	i, j, a, err := decodeTransfer(encodeTransfer(2, 0, 77), 3)
	if err != nil || i != 2 || j != 0 || a != 77 {
		t.Fatalf("got %d %d %d %v", i, j, a, err)
	}
}

// FuzzDecodeTransfer checks that decodeTransfer never panics and accepts
// only what encodeTransfer makes, within bounds.
func FuzzDecodeTransfer(f *testing.F) {
	f.Add(encodeTransfer(0, 1, 1), 3)
	f.Add(encodeTransfer(2, 2, 1), 3)
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 3)
	f.Add([]byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0}, 3)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, accounts int) {
		i, j, amount, err := decodeTransfer(b, accounts)
		if err != nil {
			return
		}
		if i < 0 || j < 0 || i >= accounts || j >= accounts || i == j || amount <= 0 {
			t.Fatalf("accepted %x as %d -> %d of %d among %d", b, i, j, amount, accounts)
		}
		if got := encodeTransfer(i, j, amount); string(got) != string(b) {
			t.Fatalf("decoded %x, which encodes as %x", b, got)
		}
	})
}

// TestBalanceFSMRefusesOverdraft checks that the raft floor's state
// machine refuses what the ledger refuses, and applies nothing then.
func TestBalanceFSMRefusesOverdraft(t *testing.T) {
	f := newBalanceFSM(3, 5)
	if r := f.Apply(raftLog(encodeTransfer(0, 1, 5))); r != nil {
		t.Fatalf("transfer of the whole balance refused: %v", r)
	}
	if r := f.Apply(raftLog(encodeTransfer(0, 2, 1))); r != errOverdraft {
		t.Fatalf("overdraft: got %v, want errOverdraft", r)
	}
	if r := f.Apply(raftLog([]byte{1})); r == nil {
		t.Fatal("a malformed entry was applied")
	}
	st := f.state()
	if st.applied != 1 || st.balances[0] != 0 || st.balances[1] != 10 || st.balances[2] != 5 {
		t.Fatalf("state %+v, want one transfer applied: [0 10 5]", st)
	}
}

// TestRaftIdenticalCatchesDivergence checks the raft floor's checker
// against replicas that differ in their balances, in their count of
// transfers, and in the money they hold.
func TestRaftIdenticalCatchesDivergence(t *testing.T) {
	group := func() *raftGroup {
		g := &raftGroup{ids: peerIDs(ledgerNodes)}
		for range ledgerNodes {
			f := newBalanceFSM(ledgerNodes, ledgerBalance)
			f.Apply(raftLog(encodeTransfer(0, 1, 3)))
			g.nodes = append(g.nodes, &raftNode{fsm: f})
		}
		return g
	}
	if err := group().identical(); err != nil {
		t.Fatalf("identical replicas refused: %v", err)
	}
	for name, spoil := range map[string]func(g *raftGroup){
		"balances": func(g *raftGroup) { g.nodes[2].fsm.balances[0]--; g.nodes[2].fsm.balances[1]++ },
		"count":    func(g *raftGroup) { g.nodes[1].fsm.applied++ },
		"money":    func(g *raftGroup) { g.nodes[0].fsm.balances[0]++ },
	} {
		g := group()
		spoil(g)
		if err := g.identical(); err == nil {
			t.Errorf("%s: divergent replicas passed", name)
		}
	}
}

func raftLog(data []byte) *raft.Log { return &raft.Log{Type: raft.LogCommand, Data: data} }
