package ledger_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

func testBlocks(t testing.TB) (ledger.Block, ledger.Block) {
	t.Helper()
	g, err := ledger.NewGenesis([]string{"3", "1", "2"}, 10, testPub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ledger.NewChain(g)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := ledger.ParseTransferID("000102030405060708090a0b0c0d0e0f")
	b, err := nextSealed(c, ledger.Transfer{ID: id, From: "1", To: "2", Amount: 3}, 7)
	if err != nil {
		t.Fatal(err)
	}
	return g, b
}

// The encoding is a format on disk and on the wire: pin it.
func TestBlockEncodingGolden(t *testing.T) {
	g, b := testBlocks(t)
	key := func(id string) string { return hex.EncodeToString(testPub[id]) }
	wantG := "0200" + "0000000000000000" + "0000000000000000000000000000000000000000000000000000000000000000" +
		"0000000000000000" + "00000003" +
		"00000001" + "31" + "000000000000000a" + key("1") +
		"00000001" + "32" + "000000000000000a" + key("2") +
		"00000001" + "33" + "000000000000000a" + key("3")
	enc, _ := g.MarshalBinary()
	if got := hex.EncodeToString(enc[:len(enc)-32-1]); got != wantG {
		t.Fatalf("genesis body\n got %s\nwant %s", got, wantG)
	}
	if !bytes.Equal(enc[len(enc)-33:], append(g.Hash[:], 0)) {
		t.Fatal("genesis encoding does not end with the hash and an empty seal")
	}
	wantB := "0201" + "0000000000000001" + g.Hash.String() + "0000000000000007" +
		"000102030405060708090a0b0c0d0e0f" + "00000001" + "31" + "00000001" + "32" + "0000000000000003"
	enc, _ = b.MarshalBinary()
	body := len(enc) - 32 - 1 - ledger.SigSize
	if got := hex.EncodeToString(enc[:body]); got != wantB {
		t.Fatalf("block body\n got %s\nwant %s", got, wantB)
	}
	if !bytes.Equal(enc[body:], append(append(b.Hash[:], ledger.SigSize), b.Sig...)) {
		t.Fatal("encoding does not end with the hash and the seal")
	}
	if !ed25519.Verify(testPub["1"], b.Hash[:], b.Sig) {
		t.Fatal("the seal does not verify under the sender's key")
	}
	// A change of the hash function, of the encoding or of the test keys
	// changes this name.
	if got, want := g.Hash.String(), "72af7e42c7090764529337af54af39cd5843a81dcdef02e26d3848ba5d4ee5a2"; got != want {
		t.Fatalf("genesis hash %s, want %s", got, want)
	}
}

func GenesisForTestOrderIndependent(t *testing.T) {
	a, _ := ledger.NewGenesis([]string{"1", "2", "3"}, 10, testPub)
	b, _ := ledger.NewGenesis([]string{"3", "2", "1"}, 10, testPub)
	c, _ := ledger.NewGenesis([]string{"1", "2", "3"}, 11, testPub)
	d, _ := ledger.NewGenesis([]string{"1", "2", "4"}, 10, testPub)
	if a.Hash != b.Hash {
		t.Error("member order changes the genesis hash")
	}
	if a.Hash == c.Hash || a.Hash == d.Hash {
		t.Error("other balances or members give the same genesis hash")
	}
}

func TestBadGenesis(t *testing.T) {
	for name, members := range map[string][]string{
		"none":      nil,
		"duplicate": {"1", "1"},
		"empty id":  {"1", ""},
		"long id":   {"1", string(make([]byte, ledger.MaxIDLen+1))},
	} {
		if _, err := ledger.NewGenesis(members, 10, testPub); !errors.Is(err, ledger.ErrBadGenesis) {
			t.Errorf("%s: err = %v, want ErrBadGenesis", name, err)
		}
	}
	if _, err := ledger.NewGenesis([]string{"1"}, -1, testPub); !errors.Is(err, ledger.ErrBadGenesis) {
		t.Errorf("negative: err = %v", err)
	}
	if _, err := ledger.NewGenesisAccounts([]ledger.Account{{"1", 1 << 62, testPub["1"]}, {"2", 1 << 62, testPub["2"]}}); !errors.Is(err, ledger.ErrBadGenesis) {
		t.Errorf("overflow: err = %v", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	g, b := testBlocks(t)
	for _, blk := range []ledger.Block{g, b} {
		enc, _ := blk.MarshalBinary()
		got, err := ledger.DecodeBlock(enc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Hash != blk.Hash || got.ComputeHash() != blk.Hash || got.Transfer != blk.Transfer || len(got.Accounts) != len(blk.Accounts) {
			t.Fatalf("round trip: got %v, want %v", got, blk)
		}
		var u ledger.Block
		if err := u.UnmarshalBinary(enc); err != nil || u.Hash != blk.Hash {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
	}
}

// Every proper prefix, and every input with a byte appended, fails.
func TestDecodeRejectsTruncatedAndTrailing(t *testing.T) {
	g, b := testBlocks(t)
	for _, blk := range []ledger.Block{g, b} {
		enc, _ := blk.MarshalBinary()
		for i := range enc {
			if _, err := ledger.DecodeBlock(enc[:i]); !errors.Is(err, ledger.ErrMalformedBlock) {
				t.Fatalf("prefix of %d bytes: err = %v", i, err)
			}
		}
		if _, err := ledger.DecodeBlock(append(enc, 0)); !errors.Is(err, ledger.ErrMalformedBlock) {
			t.Fatalf("trailing byte: err = %v", err)
		}
	}
}

// The encoding is canonical: changing any byte either fails to decode or
// yields a block that encodes back to the changed bytes (a different block).
func TestDecodeEveryByteFlip(t *testing.T) {
	g, b := testBlocks(t)
	for _, blk := range []ledger.Block{g, b} {
		enc, _ := blk.MarshalBinary()
		for i := range enc {
			mod := bytes.Clone(enc)
			mod[i] ^= 0x5a
			got, err := ledger.DecodeBlock(mod)
			if err != nil {
				continue
			}
			re, _ := got.MarshalBinary()
			if !bytes.Equal(re, mod) {
				t.Fatalf("byte %d: decoded block re-encodes differently", i)
			}
			if got.ComputeHash() == got.Hash && (!got.Sealed() || ed25519.Verify(testPub[got.Transfer.From], got.Hash[:], got.Sig)) {
				t.Fatalf("byte %d: changed block still has a valid hash and seal", i)
			}
		}
	}
}

func TestDecodeHugeCounts(t *testing.T) {
	g, _ := testBlocks(t)
	enc, _ := g.MarshalBinary()
	mod := bytes.Clone(enc)
	copy(mod[50:54], []byte{0xff, 0xff, 0xff, 0xff}) // account count
	if _, err := ledger.DecodeBlock(mod); !errors.Is(err, ledger.ErrMalformedBlock) {
		t.Fatalf("huge count: err = %v", err)
	}
	mod = bytes.Clone(enc)
	copy(mod[54:58], []byte{0x7f, 0xff, 0xff, 0xff}) // first id length
	if _, err := ledger.DecodeBlock(mod); !errors.Is(err, ledger.ErrMalformedBlock) {
		t.Fatalf("huge string: err = %v", err)
	}
	if _, err := ledger.DecodeBlock(make([]byte, ledger.MaxBlockSize+1)); !errors.Is(err, ledger.ErrMalformedBlock) {
		t.Fatalf("huge block: err = %v", err)
	}
}

func TestTransferIDParse(t *testing.T) {
	id := ledger.NewTransferID()
	if id.IsZero() || id == ledger.NewTransferID() {
		t.Fatal("NewTransferID is not random")
	}
	got, err := ledger.ParseTransferID(id.String())
	if err != nil || got != id {
		t.Fatalf("parse %s: %v %v", id, got, err)
	}
	for _, s := range []string{"", "00", id.String() + "00", "zz" + id.String()[2:]} {
		if _, err := ledger.ParseTransferID(s); err == nil {
			t.Errorf("ParseTransferID(%q) succeeded", s)
		}
	}
}

func TestParseAmount(t *testing.T) {
	for _, s := range []string{"0", "-1", "abc", "", "9223372036854775808", "1.5"} {
		if _, err := ledger.ParseAmount(s); !errors.Is(err, ledger.ErrInvalidAmount) {
			t.Errorf("ParseAmount(%q): err = %v", s, err)
		}
	}
	if v, err := ledger.ParseAmount(" 42 "); err != nil || v != 42 {
		t.Errorf("ParseAmount(42) = %d, %v", v, err)
	}
}
