package main

import (
	"sync/atomic"
	"time"
)

// budget says how long one measurement runs: for a duration, or for a
// number of operations when n > 0.
type budget struct {
	d time.Duration
	n int64
}

// warmup returns the budget of the untimed warm-up before a measurement:
// a fifth of b, and at least one operation.
func (b budget) warmup() budget {
	if b.n > 0 {
		return budget{n: max(b.n/5, 1)}
	}
	return budget{d: b.d / 5}
}

// patience bounds how long a measurement of budget b may take before it
// is abandoned as hung.
func (b budget) patience() time.Duration {
	if b.n > 0 {
		return 10 * time.Minute
	}
	return 2*b.d + time.Minute
}

// meter hands out the operations of one run of a budget; it is safe for
// concurrent use, so goroutines can share one budget.
type meter struct {
	deadline time.Time
	n        int64
	taken    atomic.Int64
}

func (b budget) start() *meter {
	return &meter{deadline: time.Now().Add(b.d), n: b.n}
}

// next claims one more operation; it reports false when the budget is
// spent. With a duration budget the first call always succeeds, so every
// run does at least one operation.
func (m *meter) next() bool {
	k := m.taken.Add(1)
	if m.n > 0 {
		return k <= m.n
	}
	return k == 1 || time.Now().Before(m.deadline)
}
