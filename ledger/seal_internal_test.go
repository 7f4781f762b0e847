package ledger

import (
	"errors"
	"maps"
	"testing"
)

// The refusal of a forged block comes from the seal check and from the
// genesis keys: the draft's checks alone take the block, and so does a
// seal check with a keyring that gives the forger's key to the victim.
func TestSealCheckIsWhatRefusesForgery(t *testing.T) {
	g, err := NewGenesis([]string{"1", "2", "3"}, 10, testPubKeys("1", "2", "3"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := c.Next(Transfer{ID: NewTransferID(), From: "2", To: "1", Amount: 5}, 1)
	if err != nil {
		t.Fatal(err)
	}
	forged = forged.Seal(testKey("1"))
	if err := c.draft().add(forged); err != nil {
		t.Fatalf("the draft alone refuses the forged block (%v): the test would not show the seal check at work", err)
	}
	broken := maps.Clone(c.keys)
	broken["2"] = c.keys["1"]
	if err := broken.verifySeals([]Block{forged}); err != nil {
		t.Fatalf("a keyring with the forger's key refuses the block: %v", err)
	}
	if err := c.keys.verifySeals([]Block{forged}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
	if err := c.Append(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Append: err = %v, want ErrBadSignature", err)
	}

	// Likewise a run whose seal is missing: the draft holds it as open,
	// only the seal rule refuses it.
	unsealed := forged
	unsealed.Sig = nil
	d := c.draft()
	if err := d.add(unsealed); err != nil || d.sealed() != 0 {
		t.Fatalf("draft: err %v, %d sealed", err, d.sealed())
	}
	if err := c.keys.verifySeals([]Block{unsealed}); !errors.Is(err, ErrUnsealed) {
		t.Fatalf("err = %v, want ErrUnsealed", err)
	}
}

func TestSealCut(t *testing.T) {
	mk := func(shape string) []Block { // 's' a sealed block, '.' an unsealed one
		var bs []Block
		for _, c := range shape {
			b := Block{}
			if c == 's' {
				b.Sig = make([]byte, SigSize)
			}
			bs = append(bs, b)
		}
		return bs
	}
	for _, tc := range []struct {
		shape string
		max   int
		want  int
	}{
		{"s", 1, 1}, {"ss", 1, 1}, {"ss", 4, 2}, {"..s.s", 2, 3}, {"..s.s", 4, 3}, {"..s.s", 5, 5},
		{"....s", 1, 5}, {".s..s", 3, 2}, {"....", 2, 0}, {"", 2, 0},
	} {
		if got := sealCut(mk(tc.shape), tc.max); got != tc.want {
			t.Errorf("sealCut(%q, %d) = %d, want %d", tc.shape, tc.max, got, tc.want)
		}
	}
}
