package ledger

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// Balances is the key-value table of the ledger: client id to balance. It
// is derived from a chain (Chain.Balances); its keys are the members.
// Applying transfers through Apply never makes a balance negative.
type Balances map[string]int64

// Clone returns a copy of b.
func (b Balances) Clone() Balances { return maps.Clone(b) }

// Members returns the client ids of b, sorted.
func (b Balances) Members() []string { return slices.Sorted(maps.Keys(b)) }

// Total returns the sum of all balances, and false if it overflows.
func (b Balances) Total() (int64, bool) {
	var sum int64
	for _, v := range b {
		if v > 0 && sum > math.MaxInt64-v || v < 0 && sum < math.MinInt64-v {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

// Check reports whether t can be applied to b: both parties are members,
// they differ, the amount is positive, the sender can pay, and the
// receiver's balance does not overflow. It does not change b.
func (b Balances) Check(t Transfer) error {
	if err := t.validate(b); err != nil {
		return err
	}
	if have := b[t.From]; have < t.Amount {
		return fmt.Errorf("%w: %s has %d, needs %d", ErrInsufficientFunds, t.From, have, t.Amount)
	}
	if b[t.To] > math.MaxInt64-t.Amount {
		return fmt.Errorf("%w: balance of %s would overflow", ErrInvalidAmount, t.To)
	}
	return nil
}

// Apply applies t to b after Check; on error b is unchanged.
func (b Balances) Apply(t Transfer) error {
	if err := b.Check(t); err != nil {
		return err
	}
	b[t.From] -= t.Amount
	b[t.To] += t.Amount
	return nil
}
