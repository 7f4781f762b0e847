package lamportmutex

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// mustStep steps m and fails the test on an error.
func mustStep(t *testing.T, m *Machine, msg Message) []Message {
	t.Helper()
	out, err := m.Step(msg)
	if err != nil {
		t.Fatalf("%v: Step(%v): %v", m.rules, msg, err)
	}
	return out
}

// TestMachineMissing: Missing names the peers a request still waits for:
// their HELLO while it is held back, then their answer (under Lamport's
// rules any later message, under Ricart-Agrawala's a REPLY); nothing once
// held or when no request is outstanding.
func TestMachineMissing(t *testing.T) {
	m, err := NewMachine("1", peerIDs(3), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Missing(); got != nil {
		t.Errorf("no request: Missing() = %q, want nil", got)
	}
	mustStep(t, m, Message{Kind: PeerUp, From: "2", To: "1"})
	mustStep(t, m, Message{Kind: Hello, From: "2", To: "1"})
	if _, err := m.Request(); err != nil {
		t.Fatal(err)
	}
	if got := m.Missing(); !slices.Equal(got, []string{"3"}) {
		t.Errorf("held back: Missing() = %q, want [3]", got)
	}

	for _, algo := range []Algorithm{Lamport, RicartAgrawala} {
		m := booted(t, 3, WithAlgorithm(algo))
		if _, err := m.Request(); err != nil {
			t.Fatal(err)
		}
		own, _ := m.Own()
		if got := m.Missing(); !slices.Equal(got, []string{"2", "3"}) {
			t.Errorf("%v: stamped: Missing() = %q, want [2 3]", algo, got)
		}
		// A later REQUEST answers ours under Lamport's rules only.
		mustStep(t, m, Message{Kind: Request, From: "3", To: "1", Clock: own.Clock + 1})
		want := []string{"2"}
		if algo == RicartAgrawala {
			want = []string{"2", "3"}
		}
		if got := m.Missing(); !slices.Equal(got, want) {
			t.Errorf("%v: after a later REQUEST from 3: Missing() = %q, want %q", algo, got, want)
		}
		mustStep(t, m, Message{Kind: Reply, From: "2", To: "1", Clock: own.Clock + 1})
		mustStep(t, m, Message{Kind: Reply, From: "3", To: "1", Clock: own.Clock + 2})
		if got := m.Missing(); !m.Held() || got != nil {
			t.Errorf("%v: after every REPLY: held %t, Missing() = %q; want held and nil", algo, m.Held(), got)
		}
	}
}

// TestMachinePeerIncarnation: the incarnation of a peer's last PeerUp, and
// whether one came; nothing for ourselves or a stranger.
func TestMachinePeerIncarnation(t *testing.T) {
	m, err := NewMachine("1", peerIDs(3), 4)
	if err != nil {
		t.Fatal(err)
	}
	check := func(peer string, wantInc uint64, wantUp bool) {
		t.Helper()
		if inc, up := m.PeerIncarnation(peer); inc != wantInc || up != wantUp {
			t.Errorf("PeerIncarnation(%q) = %d, %t; want %d, %t", peer, inc, up, wantInc, wantUp)
		}
	}
	check("2", 0, false)
	mustStep(t, m, Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 7})
	check("2", 7, true)
	mustStep(t, m, Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 9})
	check("2", 9, true)
	check("3", 0, false)
	check("1", 0, false)
	check("4", 0, false)
}

// TestMachineRefusesEarlierRequestWhileHeld: under Lamport's rules a
// REQUEST ordered before the request we hold the lock with is a violation
// that changes nothing; one ordered after it is queued behind it. While we
// only wait, an earlier REQUEST is queued ahead of ours.
func TestMachineRefusesEarlierRequestWhileHeld(t *testing.T) {
	c, err := newCluster(peerIDs(3), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := boot(c); err != nil {
		t.Fatal(err)
	}
	m := c.ms[2] // "3": a request of "1" with the same clock orders before its own
	m.AdvanceClock(10)
	if _, err := m.Request(); err != nil {
		t.Fatal(err)
	}
	own, _ := m.Own()
	waiting := m.Clone()
	mustStep(t, waiting, Message{Kind: Request, From: "1", To: "3", Clock: own.Clock - 1})
	if h, _ := waiting.q.head(); h.ID != "1" {
		t.Errorf("an earlier REQUEST while waiting: queue %v, want 1's first", waiting.q)
	}

	mustStep(t, m, Message{Kind: Reply, From: "1", To: "3", Clock: own.Clock + 1})
	mustStep(t, m, Message{Kind: Reply, From: "2", To: "3", Clock: own.Clock + 1})
	if !m.Held() {
		t.Fatal("not held after every REPLY")
	}
	for _, clock := range []uint64{0, own.Clock - 1, own.Clock} {
		msg := Message{Kind: Request, From: "1", To: "3", Clock: clock}
		before := m.Clone()
		out, err := m.Step(msg)
		if !errors.Is(err, ErrViolation) || out != nil || !reflect.DeepEqual(m, before) {
			t.Errorf("Step(%v) while holding %v = %v, %v (changed: %t); want nothing and ErrViolation",
				msg, own, out, err, !reflect.DeepEqual(m, before))
		}
	}
	mustStep(t, m, Message{Kind: Request, From: "2", To: "3", Clock: own.Clock + 1})
	if !m.Held() || len(m.q) != 2 || m.q[0] != own {
		t.Errorf("a later REQUEST while held: held %t, queue %v; want held, ours first of two", m.Held(), m.q)
	}

	ra := booted(t, 3, WithAlgorithm(RicartAgrawala))
	if _, err := ra.Request(); err != nil {
		t.Fatal(err)
	}
	mustStep(t, ra, Message{Kind: Reply, From: "2", To: "1", Clock: 5})
	mustStep(t, ra, Message{Kind: Reply, From: "3", To: "1", Clock: 5})
	if out := mustStep(t, ra, Message{Kind: Request, From: "2", To: "1", Clock: 0}); !ra.Held() || out != nil {
		t.Errorf("Ricart-Agrawala: an earlier REQUEST while held: %v, held %t; want it deferred", out, ra.Held())
	}
}

// TestQueuePutPanicsOnBrokenQueue: a queue holding two entries of one
// peer, or out of order, which only a bug can build, makes put panic; a
// sound one takes a peer's new entry in place of its old one.
func TestQueuePutPanicsOnBrokenQueue(t *testing.T) {
	for _, tc := range []struct {
		q      queue
		put    Token
		panics bool
	}{
		{queue{{Clock: 1, ID: "2"}, {Clock: 2, ID: "2"}}, Token{Clock: 3, ID: "2"}, true},
		{queue{{Clock: 2, ID: "2"}, {Clock: 1, ID: "3"}}, Token{Clock: 0, ID: "4"}, true},
		{queue{{Clock: 1, ID: "2"}, {Clock: 3, ID: "4"}}, Token{Clock: 0, ID: "4"}, false},
	} {
		func() {
			defer func() {
				if r := recover(); (r != nil) != tc.panics {
					t.Errorf("put(%v) into %v: recovered %v, want a panic: %t", tc.put, tc.q, r, tc.panics)
				}
			}()
			tc.q.put(tc.put)
		}()
	}
}

// TestMachineInvariants: each invariant the Machine asserts is caught when
// broken (the state is corrupted by hand, as only a bug could), and assert
// panics then.
func TestMachineInvariants(t *testing.T) {
	waitingAt := func(algo Algorithm) *Machine {
		m := booted(t, 3, WithAlgorithm(algo))
		if _, err := m.Request(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		algo    Algorithm
		corrupt func(m *Machine)
		want    string
	}{
		{"more entries than members", Lamport, func(m *Machine) {
			m.q = append(m.q, Token{Clock: 7, ID: "2"}, Token{Clock: 8, ID: "2"}, Token{Clock: 9, ID: "2"})
		}, "more requests queued"},
		{"stamped but not queued", Lamport, func(m *Machine) { m.q.remove("1") }, "not queued"},
		{"queued but idle", Lamport, func(m *Machine) { m.state = idle }, "none stamped"},
		{"another request of ours queued", Lamport, func(m *Machine) { m.own.Clock++ }, "not queued"},
		{"pending though synced", Lamport, func(m *Machine) { m.q.remove("1"); m.state = pending }, "held back"},
		{"held but not first", Lamport, func(m *Machine) {
			m.q.put(Token{Clock: 0, ID: "2"})
			m.state = held
		}, "does not head"},
		{"others queued under Ricart-Agrawala", RicartAgrawala, func(m *Machine) {
			m.q.put(Token{Clock: 9, ID: "2"})
		}, "others' requests"},
		{"deferred with nothing stamped", RicartAgrawala, func(m *Machine) {
			m.q.remove("1")
			m.state = idle
			m.peers[1].deferred = true
		}, "held back with no request"},
	} {
		m := waitingAt(tc.algo)
		if err := m.invariant(); err != nil {
			t.Fatalf("%s: before corruption: %v", tc.name, err)
		}
		tc.corrupt(m)
		err := m.invariant()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: invariant() = %v, want %q", tc.name, err, tc.want)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: assert did not panic", tc.name)
				}
			}()
			m.assert()
		}()
	}
}

// TestMachineIgnoresPeerDown: a PeerDown is accepted and changes nothing,
// sends nothing, in every state of our request and whether or not the
// peer came up: it is the Transport's news, no part of the algorithm.
func TestMachineIgnoresPeerDown(t *testing.T) {
	for _, algo := range []Algorithm{Lamport, RicartAgrawala} {
		fresh, err := NewMachine("1", peerIDs(3), 0, WithAlgorithm(algo))
		if err != nil {
			t.Fatal(err)
		}
		idle := booted(t, 3, WithAlgorithm(algo))
		waiting := idle.Clone()
		if _, err := waiting.Request(); err != nil {
			t.Fatal(err)
		}
		own, _ := waiting.Own()
		holding := waiting.Clone()
		mustStep(t, holding, Message{Kind: Reply, From: "2", To: "1", Clock: own.Clock + 1})
		mustStep(t, holding, Message{Kind: Reply, From: "3", To: "1", Clock: own.Clock + 1})
		if !holding.Held() {
			t.Fatalf("%v: not held after every REPLY", algo)
		}
		for name, m := range map[string]*Machine{"fresh": fresh, "idle": idle, "waiting": waiting, "holding": holding} {
			for _, inc := range []uint64{0, 5} {
				msg := Message{Kind: PeerDown, From: "2", To: "1", Clock: 1<<64 - 1, Incarnation: inc}
				if err := m.Accepts(msg); err != nil {
					t.Errorf("%v/%s: Accepts(%v) = %v, want nil", algo, name, msg, err)
				}
				before := m.Clone()
				out, err := m.Step(msg)
				if out != nil || err != nil || !reflect.DeepEqual(m, before) {
					t.Errorf("%v/%s: Step(%v) = %v, %v (changed: %t); want nothing, no change",
						algo, name, msg, out, err, !reflect.DeepEqual(m, before))
				}
			}
		}
	}
}
