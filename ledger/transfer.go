package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// TransferID names a transfer. It is chosen by the caller (16 random bytes
// by default, see NewTransferID); a retried transfer with the same ID is
// answered with the original outcome and never applied twice.
type TransferID [16]byte

// NewTransferID returns a random TransferID.
func NewTransferID() TransferID {
	var id TransferID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24)
	return id
}

// ParseTransferID parses the 32 hex digits written by TransferID.String.
func ParseTransferID(s string) (TransferID, error) {
	var id TransferID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("transfer id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("transfer id %q: %w", s, err)
	}
	return id, nil
}

// String returns id as 32 lower-case hex digits.
func (id TransferID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is all zeros (no ID chosen).
func (id TransferID) IsZero() bool { return id == TransferID{} }

// Transfer moves Amount from client From to client To.
type Transfer struct {
	ID     TransferID
	From   string
	To     string
	Amount int64
}

// String describes t for people and logs.
func (t Transfer) String() string {
	return fmt.Sprintf("transfer %s: %s -> %s, %d", t.ID, t.From, t.To, t.Amount)
}

// ParseAmount parses a decimal amount as a person types it. It returns an
// error wrapping ErrInvalidAmount for anything that is not a positive
// integer fitting in an int64.
func ParseAmount(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrInvalidAmount, s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("%w: %d", ErrInvalidAmount, v)
	}
	return v, nil
}

// validate checks t against a balance table without looking at funds:
// members, amount, self-transfer.
func (t Transfer) validate(b Balances) error {
	if _, ok := b[t.From]; !ok {
		return fmt.Errorf("%w: sender %q", ErrUnknownClient, t.From)
	}
	if _, ok := b[t.To]; !ok {
		return fmt.Errorf("%w: receiver %q", ErrUnknownClient, t.To)
	}
	if t.From == t.To {
		return fmt.Errorf("%w: %q", ErrSelfTransfer, t.From)
	}
	if t.Amount <= 0 {
		return fmt.Errorf("%w: %d", ErrInvalidAmount, t.Amount)
	}
	return nil
}
