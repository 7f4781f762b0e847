package ledger_test

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

func newChain(t testing.TB, members []string) *ledger.Chain {
	t.Helper()
	g, err := ledger.NewGenesis(members, ledger.DefaultInitialBalance, testPub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ledger.NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Random transfer sequences, including invalid ones, checked against a
// simple model after every step.
func TestChainProperties(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		members := memberIDs(2 + rng.IntN(6))
		c := newChain(t, members)
		model := c.Balances()
		want := total(t, model)
		pick := func() string {
			if rng.IntN(30) == 0 {
				return "stranger"
			}
			return members[rng.IntN(len(members))]
		}
		for step := range 200 {
			tr := ledger.Transfer{ID: ledger.NewTransferID(), From: pick(), To: pick(), Amount: rng.Int64N(15) - 1}
			blk, err := nextSealed(c, tr, uint64(step+1))
			_, fromOK := model[tr.From]
			_, toOK := model[tr.To]
			var wantErr error
			switch {
			case !fromOK || !toOK:
				wantErr = ledger.ErrUnknownClient
			case tr.From == tr.To:
				wantErr = ledger.ErrSelfTransfer
			case tr.Amount <= 0:
				wantErr = ledger.ErrInvalidAmount
			case model[tr.From] < tr.Amount:
				wantErr = ledger.ErrInsufficientFunds
			}
			if wantErr != nil {
				if !errors.Is(err, wantErr) {
					t.Fatalf("seed %d step %d: %v: err = %v, want %v", seed, step, tr, err, wantErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("seed %d step %d: %v: %v", seed, step, tr, err)
			}
			if err := c.Append(blk); err != nil {
				t.Fatalf("seed %d step %d: append: %v", seed, step, err)
			}
			model[tr.From] -= tr.Amount
			model[tr.To] += tr.Amount
			got := c.Balances()
			if !maps.Equal(got, model) {
				t.Fatalf("seed %d step %d: table %v, model %v", seed, step, got, model)
			}
			for id, v := range got {
				if v < 0 {
					t.Fatalf("seed %d step %d: %s has %d", seed, step, id, v)
				}
			}
			if sum := total(t, got); sum != want {
				t.Fatalf("seed %d step %d: total %d, want %d", seed, step, sum, want)
			}
		}
		folded, err := ledger.Fold(ledger.ChainBlocks(c))
		if err != nil || !maps.Equal(folded, c.Balances()) {
			t.Fatalf("seed %d: fold %v (%v) != table %v", seed, folded, err, c.Balances())
		}
		if err := ledger.VerifyChain(c); err != nil {
			t.Fatalf("seed %d: verify: %v", seed, err)
		}
	}
}

func buildChain(t testing.TB, n int) *ledger.Chain {
	t.Helper()
	c := newChain(t, memberIDs(3))
	rng := rand.New(rand.NewPCG(1, 2))
	for c.Len() <= n {
		from, to := memberIDs(3)[rng.IntN(3)], memberIDs(3)[rng.IntN(3)]
		blk, err := nextSealed(c, ledger.Transfer{ID: ledger.NewTransferID(), From: from, To: to, Amount: 1 + rng.Int64N(3)}, uint64(c.Len()))
		if err != nil {
			continue
		}
		if err := c.Append(blk); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Changing any field of any block is reported at that block's height.
func TestVerifyDetectsTamperAtHeight(t *testing.T) {
	c := buildChain(t, 12)
	mutations := map[string]func(*ledger.Block){
		"height": func(b *ledger.Block) { b.Height++ },
		"prev":   func(b *ledger.Block) { b.Prev[3] ^= 1 },
		"clock":  func(b *ledger.Block) { b.Clock++ },
		"id":     func(b *ledger.Block) { b.Transfer.ID[0] ^= 1 },
		"from":   func(b *ledger.Block) { b.Transfer.From, b.Transfer.To = b.Transfer.To, b.Transfer.From },
		"amount": func(b *ledger.Block) { b.Transfer.Amount++ },
		"hash":   func(b *ledger.Block) { b.Hash[31] ^= 1 },
		"seal": func(b *ledger.Block) {
			if b.Sealed() {
				b.Sig = append([]byte(nil), b.Sig...)
				b.Sig[5] ^= 1
			} else {
				b.Sig = make([]byte, ledger.SigSize)
			}
		},
		"accounts": func(b *ledger.Block) { b.Accounts = append(b.Accounts, ledger.Account{ID: "9"}) },
	}
	for h := range c.Len() {
		for name, mutate := range mutations {
			blocks := ledger.ChainBlocks(c)
			if h == 0 {
				blocks[0].Accounts = append([]ledger.Account(nil), blocks[0].Accounts...)
				blocks[0].Accounts[0].Balance++ // genesis: change a balance
			} else {
				mutate(&blocks[h])
			}
			_, err := ledger.VerifyBlocks(blocks)
			var be *ledger.BlockError
			if !errors.As(err, &be) || be.Height != uint64(h) || !errors.Is(err, ledger.ErrInvalidBlock) {
				t.Fatalf("height %d, %s changed: err = %v", h, name, err)
			}
		}
	}
}

func TestChainAppendRejects(t *testing.T) {
	c := buildChain(t, 3)
	head := c.Head()
	good, err := nextSealed(c, ledger.Transfer{ID: ledger.NewTransferID(), From: "1", To: "2", Amount: 1}, 99)
	if err != nil {
		t.Fatal(err)
	}
	rehash := func(b ledger.Block) ledger.Block {
		b.Hash = b.ComputeHash()
		return b.Seal(ledger.TestKey(b.Transfer.From))
	}
	dupID := good
	dupID.Transfer.ID = head.Transfer.ID
	broke := good
	broke.Transfer.Amount = 1000
	cases := map[string]struct {
		b    ledger.Block
		want error
	}{
		"height":    {rehash(ledger.Block{Height: head.Height + 2, Prev: head.Hash, Transfer: good.Transfer}), ledger.ErrBadHeight},
		"prev":      {rehash(ledger.Block{Height: head.Height + 1, Prev: c.Genesis().Hash, Transfer: good.Transfer}), ledger.ErrBadPrev},
		"hash":      {func() ledger.Block { b := good; b.Hash[0] ^= 1; return b }(), ledger.ErrBadHash},
		"duplicate": {rehash(dupID), ledger.ErrDuplicateTransfer},
		"funds":     {rehash(broke), ledger.ErrInsufficientFunds},
		"genesis":   {c.Genesis(), ledger.ErrBadHeight},
	}
	for name, tc := range cases {
		err := c.Append(tc.b)
		var be *ledger.BlockError
		if !errors.Is(err, tc.want) || !errors.As(err, &be) || be.Height != head.Height+1 {
			t.Errorf("%s: err = %v, want %v at height %d", name, err, tc.want, head.Height+1)
		}
	}
	if c.Head().Hash != head.Hash {
		t.Fatal("a rejected block changed the head")
	}
	if err := c.Append(good); err != nil {
		t.Fatal(err)
	}
	if h, ok := c.TransferHeight(good.Transfer.ID); !ok || h != good.Height {
		t.Fatalf("TransferHeight = %d, %v", h, ok)
	}
}

// A valid genesis bounds the total, so only a hand-made table can overflow.
func TestBalancesOverflow(t *testing.T) {
	b := ledger.Balances{"a": 5, "b": math.MaxInt64 - 2}
	if err := b.Apply(ledger.Transfer{From: "a", To: "b", Amount: 3}); !errors.Is(err, ledger.ErrInvalidAmount) {
		t.Fatalf("overflowing receiver: err = %v", err)
	}
	if b["a"] != 5 || b["b"] != math.MaxInt64-2 {
		t.Fatalf("failed Apply changed the table: %v", b)
	}
	if _, ok := (ledger.Balances{"a": math.MaxInt64, "b": 1}).Total(); ok {
		t.Fatal("Total did not report overflow")
	}
}
