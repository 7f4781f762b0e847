package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
)

// DefaultInitialBalance is every member's balance in the genesis block
// unless configured otherwise (the course's default).
const DefaultInitialBalance = 10

// MaxIDLen is the longest client id, in bytes.
const MaxIDLen = 255

// Hash is a SHA-256 block hash.
type Hash [sha256.Size]byte

// String returns h as 64 lower-case hex digits.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 8 hex digits of h, for people.
func (h Hash) Short() string { return hex.EncodeToString(h[:4]) }

// IsZero reports whether h is all zeros.
func (h Hash) IsZero() bool { return h == Hash{} }

// Account is a member of the ledger, its balance in the genesis block, and
// the Ed25519 public key under which its blocks are signed. The key is part
// of the genesis encoding, so the genesis hash binds every member's key.
type Account struct {
	ID        string
	Balance   int64
	PublicKey ed25519.PublicKey
}

// Block is one entry of the chain. Block 0, the genesis, holds the members
// and their initial balances in Accounts (sorted by ID) and no Transfer;
// every later block holds exactly one Transfer and no Accounts. Hash is
// the SHA-256 of the block's canonical encoding (see ComputeHash), so the
// genesis hash names the ledger.
//
// Sig, when not empty, is a seal: the Ed25519 signature of Hash by the
// member that spends in Transfer.From. It is not part of the hashed body.
// A seal covers its own block and, through the Prev links, every earlier
// block back to the previous seal, provided they all spend from the same
// member; a block not covered by such a seal is never inserted (see
// Chain.Append). The genesis carries no seal: its hash names the ledger.
//
// Blocks are values; the Accounts slice of a genesis block and Sig are
// shared by copies and must not be modified.
type Block struct {
	Height   uint64
	Prev     Hash   // hash of block Height-1; zero in the genesis
	Clock    uint64 // the mutex token's clock under which the block was made; 0 in the genesis
	Transfer Transfer
	Accounts []Account // genesis only
	Hash     Hash
	Sig      []byte // empty, or SigSize bytes: a seal by Transfer.From over Hash
}

// SigSize is the length of a seal: an Ed25519 signature.
const SigSize = ed25519.SignatureSize

// Sealed reports whether b carries a seal (it may still fail to verify).
func (b Block) Sealed() bool { return len(b.Sig) > 0 }

// Seal returns b with Sig set to key's signature of b.Hash. key must be
// the key of b.Transfer.From for the seal to verify.
func (b Block) Seal(key ed25519.PrivateKey) Block {
	b.Sig = ed25519.Sign(key, b.Hash[:])
	return b
}

// IsGenesis reports whether b is a genesis block (height 0).
func (b Block) IsGenesis() bool { return b.Height == 0 }

// ComputeHash returns the SHA-256 of b's canonical encoding without its
// Hash field. It does not read or change b.Hash.
func (b Block) ComputeHash() Hash {
	var buf [128]byte
	return sha256.Sum256(b.appendBody(buf[:0]))
}

// String describes b for people and logs.
func (b Block) String() string {
	if b.IsGenesis() {
		var sb strings.Builder
		for i, a := range b.Accounts {
			if i > 0 {
				sb.WriteString(" ")
			}
			fmt.Fprintf(&sb, "%s=%d", a.ID, a.Balance)
		}
		return fmt.Sprintf("block 0 %s genesis [%s]", b.Hash.Short(), sb.String())
	}
	return fmt.Sprintf("block %d %s clock %d: %s -> %s %d (id %s)", b.Height, b.Hash.Short(), b.Clock,
		b.Transfer.From, b.Transfer.To, b.Transfer.Amount, b.Transfer.ID)
}

// NewGenesis returns the genesis block of a ledger whose members each start
// with balance, and sign their blocks with keys[member]. The order of
// members does not matter: the same set, balance and keys always give the
// same block and hash. Every member needs a key of
// ed25519.PublicKeySize bytes, and no two members may share one. A ledger
// has at most as many members as a block of MaxBlockSize bytes can hold
// (23,300); more are refused with ErrBadGenesis.
func NewGenesis(members []string, balance int64, keys map[string]ed25519.PublicKey) (Block, error) {
	accts := make([]Account, len(members))
	for i, m := range members {
		accts[i] = Account{ID: m, Balance: balance, PublicKey: keys[m]}
	}
	return newGenesisAccounts(accts)
}

// memberIDs returns the ids of a genesis block's accounts, sorted.
func (b Block) memberIDs() []string {
	ids := make([]string, len(b.Accounts))
	for i, a := range b.Accounts {
		ids[i] = a.ID
	}
	return ids
}

// newGenesisAccounts returns the genesis block holding accts (in any order;
// they are sorted by ID).
func newGenesisAccounts(accts []Account) (Block, error) {
	a := slices.Clone(accts)
	slices.SortFunc(a, func(x, y Account) int { return strings.Compare(x.ID, y.ID) })
	for i := range a {
		a[i].PublicKey = bytes.Clone(a[i].PublicKey)
	}
	g := Block{Accounts: a}
	if _, err := genesisBalances(g); err != nil {
		return Block{}, err
	}
	g.Hash = g.ComputeHash()
	return g, nil
}

// genesisBalances checks the genesis fields of g (not its hash) and returns
// its balance table.
func genesisBalances(g Block) (Balances, error) {
	switch {
	case g.Height != 0:
		return nil, fmt.Errorf("%w: height %d", ErrBadGenesis, g.Height)
	case !g.Prev.IsZero() || g.Clock != 0 || g.Transfer != (Transfer{}):
		return nil, fmt.Errorf("%w: prev, clock and transfer must be zero", ErrBadGenesis)
	case len(g.Sig) != 0:
		return nil, fmt.Errorf("%w: the genesis carries no seal", ErrBadGenesis)
	case len(g.Accounts) == 0:
		return nil, fmt.Errorf("%w: no members", ErrBadGenesis)
	case len(g.Accounts) > maxMembers:
		return nil, fmt.Errorf("%w: %d members, more than %d", ErrBadGenesis, len(g.Accounts), maxMembers)
	}
	b := make(Balances, len(g.Accounts))
	keys := make(map[string]string, len(g.Accounts))
	var total int64
	for i, a := range g.Accounts {
		switch {
		case a.ID == "" || len(a.ID) > MaxIDLen:
			return nil, fmt.Errorf("%w: member id %q must have 1 to %d bytes", ErrBadGenesis, a.ID, MaxIDLen)
		case i > 0 && g.Accounts[i-1].ID >= a.ID:
			return nil, fmt.Errorf("%w: members not sorted or duplicate %q", ErrBadGenesis, a.ID)
		case a.Balance < 0:
			return nil, fmt.Errorf("%w: negative balance %d for %q", ErrBadGenesis, a.Balance, a.ID)
		case total > math.MaxInt64-a.Balance:
			return nil, fmt.Errorf("%w: total of balances overflows", ErrBadGenesis)
		case len(a.PublicKey) != ed25519.PublicKeySize:
			return nil, fmt.Errorf("%w: member %q has a public key of %d bytes, want %d",
				ErrBadGenesis, a.ID, len(a.PublicKey), ed25519.PublicKeySize)
		case keys[string(a.PublicKey)] != "":
			return nil, fmt.Errorf("%w: members %q and %q have the same public key",
				ErrBadGenesis, keys[string(a.PublicKey)], a.ID)
		}
		keys[string(a.PublicKey)] = a.ID
		total += a.Balance
		b[a.ID] = a.Balance
	}
	return b, nil
}
