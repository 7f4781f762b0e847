package lamportmutex

import (
	"fmt"
	"testing"
)

// benchGroup returns synced Machines for n peers: every PeerUp and the
// REPLY it causes has been delivered, so a Request is stamped at once.
func benchGroup(b *testing.B, n int) []*Machine {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%02d", i)
	}
	ms := make([]*Machine, n)
	for i, id := range ids {
		m, err := NewMachine(id, ids, 0)
		if err != nil {
			b.Fatal(err)
		}
		ms[i] = m
	}
	var queue []Message
	for i, m := range ms {
		for j, id := range ids {
			if i != j {
				out, err := m.Step(Message{Kind: PeerUp, From: id, To: ids[i]})
				if err != nil {
					b.Fatal(err)
				}
				queue = append(queue, out...)
			}
		}
	}
	deliverAll(b, byID(ms), queue)
	for _, m := range ms {
		if !m.Synced() {
			b.Fatalf("%s not synced after start-up", m.ID())
		}
	}
	return ms
}

func byID(ms []*Machine) map[string]*Machine {
	index := make(map[string]*Machine, len(ms))
	for _, m := range ms {
		index[m.ID()] = m
	}
	return index
}

// deliverAll delivers msgs, and everything they cause, breadth first.
func deliverAll(b *testing.B, index map[string]*Machine, msgs []Message) int {
	delivered := 0
	for len(msgs) > 0 {
		msg := msgs[0]
		msgs = msgs[1:]
		out, err := index[msg.To].Step(msg)
		if err != nil {
			b.Fatal(err)
		}
		delivered++
		msgs = append(msgs, out...)
	}
	return delivered
}

// BenchmarkMachineCycle runs whole uncontended entries through the state
// machines of a group: Request at one peer, every REQUEST delivered and
// answered, entry, Release, every RELEASE delivered. One op is one entry,
// 3(N-1) Steps and sends; no goroutines, no transport.
func BenchmarkMachineCycle(b *testing.B) {
	for _, n := range []int{3, 8, 32} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ms := benchGroup(b, n)
			holder, index := ms[0], byID(ms)
			b.ReportAllocs()
			for b.Loop() {
				reqs, err := holder.Request()
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range reqs {
					replies, err := index[r.To].Step(r)
					if err != nil {
						b.Fatal(err)
					}
					for _, rep := range replies {
						if _, err := holder.Step(rep); err != nil {
							b.Fatal(err)
						}
					}
				}
				if !holder.Held() {
					b.Fatal("not held after every reply")
				}
				rels, err := holder.Release(nil)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rels {
					if _, err := index[r.To].Step(r); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(3*(n-1)), "msgs/op")
		})
	}
}

// BenchmarkMachineContendedCycle runs entries with every peer requesting:
// each op is one hand-off (the holder releases, the next in line enters)
// and the releaser's new request, with every message delivered.
func BenchmarkMachineContendedCycle(b *testing.B) {
	for _, n := range []int{3, 8, 32} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ms := benchGroup(b, n)
			index := byID(ms)
			var pending []Message
			for _, m := range ms {
				out, err := m.Request()
				if err != nil {
					b.Fatal(err)
				}
				pending = append(pending, out...)
			}
			deliverAll(b, index, pending)
			b.ReportAllocs()
			steps := 0
			for b.Loop() {
				var holder *Machine
				for _, m := range ms {
					if m.Held() {
						holder = m
					}
				}
				if holder == nil {
					b.Fatal("nobody holds the lock with every request delivered")
				}
				rels, err := holder.Release(nil)
				if err != nil {
					b.Fatal(err)
				}
				reqs, err := holder.Request()
				if err != nil {
					b.Fatal(err)
				}
				steps += deliverAll(b, index, append(rels, reqs...))
			}
			b.ReportMetric(float64(steps)/float64(b.N), "steps/op")
		})
	}
}

// BenchmarkMachineStepRequestRelease measures one peer handling another's
// REQUEST (queue insert, REPLY built) and then its RELEASE (queue removal).
func BenchmarkMachineStepRequestRelease(b *testing.B) {
	for _, n := range []int{3, 32} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ms := benchGroup(b, n)
			m, from := ms[0], ms[n-1].ID()
			req := Message{Kind: Request, From: from, To: m.ID()}
			rel := Message{Kind: Release, From: from, To: m.ID()}
			b.ReportAllocs()
			for b.Loop() {
				req.Clock = m.Clock() + 1
				if _, err := m.Step(req); err != nil {
					b.Fatal(err)
				}
				rel.Clock = m.Clock() + 1
				if _, err := m.Step(rel); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQueuePutRemove measures inserting a token into a queue of n-1
// others, at the back (the common case: a newer request) and at the front,
// then removing it.
func BenchmarkQueuePutRemove(b *testing.B) {
	for _, n := range []int{3, 32} {
		for _, where := range []string{"back", "front"} {
			b.Run(fmt.Sprintf("N=%d/%s", n, where), func(b *testing.B) {
				var q queue
				for i := 1; i < n; i++ {
					q.put(Token{Clock: uint64(10 * i), ID: fmt.Sprintf("p%02d", i)})
				}
				t := Token{Clock: uint64(10 * n), ID: "p00"}
				if where == "front" {
					t.Clock = 1
				}
				b.ReportAllocs()
				for b.Loop() {
					q.put(t)
					q.remove(t.ID)
				}
				if len(q) != n-1 {
					b.Fatalf("queue has %d entries, want %d", len(q), n-1)
				}
			})
		}
	}
}

// BenchmarkQueueHead measures reading the first entry.
func BenchmarkQueueHead(b *testing.B) {
	var q queue
	for i := 1; i < 32; i++ {
		q.put(Token{Clock: uint64(i), ID: fmt.Sprintf("p%02d", i)})
	}
	b.ReportAllocs()
	var t Token
	for b.Loop() {
		t, _ = q.head()
	}
	if t.Clock != 1 {
		b.Fatalf("head %v", t)
	}
}
