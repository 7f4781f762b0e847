package lamportmutex

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// booted returns machine "1" of a group of n that has finished first
// contact, so that it acts on every message addressed to it.
func booted(t *testing.T, n int, opts ...MachineOption) *Machine {
	t.Helper()
	c, err := newCluster(peerIDs(n), true, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := boot(c); err != nil {
		t.Fatal(err)
	}
	return c.ms[0]
}

// TestMachineRefusesClockAboveMax: a message of any kind with a clock
// above MaxClock is a violation and changes nothing, under both
// algorithms.
func TestMachineRefusesClockAboveMax(t *testing.T) {
	for _, algo := range []Algorithm{Lamport, RicartAgrawala} {
		m := booted(t, 3, WithAlgorithm(algo))
		if _, err := m.Step(Message{Kind: Request, From: "2", To: "1", Clock: 5}); err != nil {
			t.Fatal(err) // "2" has a request queued, so its RELEASE would be in order
		}
		for _, k := range []Kind{Request, Reply, Release, Hello, Data} {
			for _, clock := range []uint64{MaxClock + 1, 1<<64 - 1} {
				for _, payload := range [][]byte{nil, []byte("x")} {
					msg := Message{Kind: k, From: "2", To: "1", Clock: clock, Payload: payload}
					before := m.Clone()
					if err := m.Accepts(msg); !errors.Is(err, ErrViolation) {
						t.Errorf("%v: Accepts(%v) = %v, want ErrViolation", algo, msg, err)
					}
					out, err := m.Step(msg)
					if !errors.Is(err, ErrViolation) || out != nil {
						t.Errorf("%v: Step(%v) = %v, %v; want nothing and ErrViolation", algo, msg, out, err)
					}
					if !reflect.DeepEqual(m, before) {
						t.Errorf("%v: Step(%v) changed the Machine: %s, was %s", algo, msg, machineString(m), machineString(before))
					}
				}
			}
		}
	}
}

// TestMachineClockSaturates: a clock of exactly MaxClock is accepted (from
// within MaxClockStep of it); the clock then stays at MaxClock instead of wrapping, and a request stamped
// MaxClock is never granted, even with every peer's answer at MaxClock.
func TestMachineClockSaturates(t *testing.T) {
	for _, algo := range []Algorithm{Lamport, RicartAgrawala} {
		m := booted(t, 3, WithAlgorithm(algo))
		m.AdvanceClock(MaxClock - MaxClockStep)
		if _, err := m.Step(Message{Kind: Reply, From: "2", To: "1", Clock: MaxClock}); err != nil {
			t.Fatalf("%v: a REPLY at MaxClock: %v", algo, err)
		}
		if m.Clock() != MaxClock {
			t.Fatalf("%v: clock %d after a REPLY at MaxClock, want MaxClock", algo, m.Clock())
		}
		out, err := m.Request()
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range out {
			if msg.Clock != MaxClock {
				t.Errorf("%v: %v sent after saturation, want clock MaxClock", algo, msg)
			}
		}
		if own, _ := m.Own(); own.Clock != MaxClock {
			t.Errorf("%v: request stamped %v, want MaxClock", algo, own)
		}
		for _, p := range []string{"2", "3"} {
			for _, k := range []Kind{Reply, Hello} {
				if _, err := m.Step(Message{Kind: k, From: p, To: "1", Clock: MaxClock}); err != nil {
					t.Fatalf("%v: %v", algo, err)
				}
			}
		}
		if m.Held() {
			t.Errorf("%v: a request stamped MaxClock was granted: %s", algo, machineString(m))
		}
		if m.Clock() != MaxClock {
			t.Errorf("%v: clock %d, want it to stay at MaxClock", algo, m.Clock())
		}
	}
	m := booted(t, 2)
	m.AdvanceClock(1<<64 - 1)
	if m.Clock() != MaxClock {
		t.Errorf("AdvanceClock(2^64-1): clock %d, want MaxClock", m.Clock())
	}
}

// TestMachineClockStep: a message exactly MaxClockStep above the
// receiver's clock is accepted; one more is a violation and changes
// nothing, for every kind, under both algorithms. A faulty peer's REQUEST
// at MaxClock is refused, and so is one at MaxClock-50.
func TestMachineClockStep(t *testing.T) {
	for _, algo := range []Algorithm{Lamport, RicartAgrawala} {
		for _, k := range []Kind{Request, Reply, Release, Hello, Data} {
			m := booted(t, 3, WithAlgorithm(algo))
			m.AdvanceClock(1000)
			base := m.Clock()
			for _, clock := range []uint64{base + MaxClockStep + 1, base + MaxClockStep + 2, MaxClock - 50, MaxClock} {
				msg := Message{Kind: k, From: "2", To: "1", Clock: clock}
				before := m.Clone()
				if err := m.Accepts(msg); !errors.Is(err, ErrViolation) {
					t.Errorf("%v: Accepts(%v) at clock %d = %v, want ErrViolation", algo, msg, base, err)
				}
				out, err := m.Step(msg)
				if !errors.Is(err, ErrViolation) || out != nil {
					t.Errorf("%v: Step(%v) at clock %d = %v, %v; want nothing and ErrViolation", algo, msg, base, out, err)
				}
				if !reflect.DeepEqual(m, before) {
					t.Errorf("%v: Step(%v) changed the Machine: %s, was %s", algo, msg, machineString(m), machineString(before))
				}
			}
			msg := Message{Kind: k, From: "2", To: "1", Clock: base + MaxClockStep}
			if _, err := m.Step(msg); err != nil {
				t.Errorf("%v: Step(%v) at clock %d = %v, want it accepted", algo, msg, base, err)
			}
			switch {
			case k == Hello && m.Clock() != base+MaxClockStep: // a greeting takes the clock without a tick
				t.Errorf("%v: clock %d after %v, want its clock", algo, m.Clock(), msg)
			case k != Hello && k != Data && m.Clock() <= base+MaxClockStep:
				t.Errorf("%v: clock %d after %v, want past it", algo, m.Clock(), msg)
			}
		}
	}
}

// TestMachineRefusesViolations: a message addressed to another member, one
// of unknown kind, and under Lamport's algorithm a RELEASE with a payload
// from a peer with no request queued are violations; under
// Ricart-Agrawala that RELEASE is accepted (see Machine.Step).
func TestMachineRefusesViolations(t *testing.T) {
	m := booted(t, 3)
	cases := []struct {
		msg  Message
		also error
	}{
		{Message{Kind: Reply, From: "2", To: "3", Clock: 9}, ErrNotMember},
		{Message{Kind: 0, From: "2", To: "1", Clock: 9}, ErrBadMessage},
		{Message{Kind: 200, From: "2", To: "1", Clock: 9}, ErrBadMessage},
		{Message{Kind: Release, From: "2", To: "1", Clock: 9, Payload: []byte("forged")}, nil},
		{Message{Kind: Release, From: "2", To: "1", Clock: 9, Payload: []byte{}}, nil},
	}
	for _, tc := range cases {
		before := m.Clone()
		_, err := m.Step(tc.msg)
		if !errors.Is(err, ErrViolation) || tc.also != nil && !errors.Is(err, tc.also) {
			t.Errorf("Step(%v) = %v, want ErrViolation (and %v)", tc.msg, err, tc.also)
		}
		if !reflect.DeepEqual(m, before) {
			t.Errorf("Step(%v) changed the Machine", tc.msg)
		}
	}
	if _, err := m.Step(Message{Kind: Release, From: "2", To: "1", Clock: 9}); err != nil {
		t.Errorf("a RELEASE without payload and without request: %v, want it accepted (it withdraws nothing)", err)
	}
	if _, err := m.Step(Message{Kind: Request, From: "2", To: "1", Clock: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(Message{Kind: Release, From: "2", To: "1", Clock: 12, Payload: []byte("ok")}); err != nil {
		t.Errorf("the RELEASE of a queued request: %v", err)
	}

	ra := booted(t, 3, WithAlgorithm(RicartAgrawala))
	if _, err := ra.Step(Message{Kind: Release, From: "2", To: "1", Clock: 9, Payload: []byte("x")}); err != nil {
		t.Errorf("Ricart-Agrawala: a RELEASE with payload and no request seen: %v, want it accepted", err)
	}
}

// TestMessageStringOmitsPayload: a message's String carries the payload's
// length, so that a large payload does not flood logs and errors.
func TestMessageStringOmitsPayload(t *testing.T) {
	msg := Message{Kind: Release, From: "1", To: "2", Clock: 3, Payload: bytes.Repeat([]byte("x"), 1<<20)}
	s := msg.String()
	if len(s) > 100 || !strings.Contains(s, "payload=1048576B") {
		t.Errorf("String() = %.200q (%d bytes), want the payload's length only", s, len(s))
	}
}

// TestMachineRefusesRepeatedRequest: under Lamport's algorithm a REQUEST
// from a peer whose request is queued is a violation that changes nothing
// (no REPLY), while one after its RELEASE, or after its PeerUp, is answered;
// under Ricart-Agrawala the same holds for a REQUEST from a peer whose
// earlier request waits for our REPLY.
func TestMachineRefusesRepeatedRequest(t *testing.T) {
	refused := func(m *Machine, msg Message) {
		t.Helper()
		before := m.Clone()
		out, err := m.Step(msg)
		if !errors.Is(err, ErrViolation) || out != nil {
			t.Errorf("%v: Step(%v) = %v, %v; want nothing and ErrViolation", m.rules, msg, out, err)
		}
		if !reflect.DeepEqual(m, before) {
			t.Errorf("%v: Step(%v) changed the Machine", m.rules, msg)
		}
	}
	step := func(m *Machine, msg Message) []Message {
		t.Helper()
		out, err := m.Step(msg)
		if err != nil {
			t.Fatalf("%v: Step(%v): %v", m.rules, msg, err)
		}
		return out
	}

	m := booted(t, 3)
	if out := step(m, Message{Kind: Request, From: "2", To: "1", Clock: 5}); len(out) != 1 || out[0].Kind != Reply {
		t.Fatalf("first REQUEST answered with %v, want one REPLY", out)
	}
	refused(m, Message{Kind: Request, From: "2", To: "1", Clock: 6})
	refused(m, Message{Kind: Request, From: "2", To: "1", Clock: 5})
	step(m, Message{Kind: Release, From: "2", To: "1", Clock: 7})
	if out := step(m, Message{Kind: Request, From: "2", To: "1", Clock: 8}); len(out) != 1 || out[0].Kind != Reply {
		t.Errorf("REQUEST after a RELEASE answered with %v, want one REPLY", out)
	}
	step(m, Message{Kind: PeerUp, From: "2", To: "1", Incarnation: 2})
	step(m, Message{Kind: Hello, From: "2", To: "1", Clock: 9})
	if out := step(m, Message{Kind: Request, From: "2", To: "1", Clock: 8}); len(out) != 1 || out[0].Kind != Reply {
		t.Errorf("a REQUEST resent after PeerUp answered with %v, want one REPLY", out)
	}

	ra := booted(t, 3, WithAlgorithm(RicartAgrawala))
	if _, err := ra.Request(); err != nil {
		t.Fatal(err)
	}
	own, _ := ra.Own()
	if out := step(ra, Message{Kind: Request, From: "2", To: "1", Clock: own.Clock + 1}); out != nil {
		t.Fatalf("a later REQUEST answered with %v, want it deferred", out)
	}
	refused(ra, Message{Kind: Request, From: "2", To: "1", Clock: own.Clock + 2})
	if out := step(ra, Message{Kind: Request, From: "3", To: "1", Clock: own.Clock - 1}); len(out) != 1 || out[0].Kind != Reply {
		t.Errorf("an earlier REQUEST answered with %v, want one REPLY", out)
	}
}
