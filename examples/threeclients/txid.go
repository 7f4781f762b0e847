package main

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/lamportledger/lamportledger/ledger"
)

// transferIDs numbers a client's transfers. The ID of its n-th transfer is
// an 8-byte tag of the client's id followed by n (big-endian), so two runs
// of one script make the same chain, and a teacher can diff them.
//
// A number must never be reused: the ledger answers a known ID with the
// first outcome, so a reused one would silently drop the new transfer. The
// numbering continues after the highest number in the client's chain when
// it starts; a committed block of its own is always in its store (the
// holder syncs its blocks before it releases), and where the store lost it
// (-memory) the ledger still knows the ID when the transfer is committed,
// which see (client).submitTransfer.
type transferIDs struct {
	tag  [8]byte
	mu   sync.Mutex
	last uint64 // the highest number taken or seen
}

func newTransferIDs(client string, chain []ledger.Block) *transferIDs {
	sum := sha256.Sum256([]byte("lamportledger threeclients transfer ids\x00" + client))
	t := &transferIDs{}
	copy(t.tag[:], sum[:])
	t.skipPast(chain)
	return t
}

// take returns the next number's ID.
func (t *transferIDs) take() ledger.TransferID {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	var id ledger.TransferID
	copy(id[:8], t.tag[:])
	binary.BigEndian.PutUint64(id[8:], t.last)
	return id
}

// skipPast makes later numbers higher than every number of this client in
// chain.
func (t *transferIDs) skipPast(chain []ledger.Block) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range chain {
		if n, ok := t.number(b.Transfer.ID); ok {
			t.last = max(t.last, n)
		}
	}
}

// number is the number in id, if id is one of this client's.
func (t *transferIDs) number(id ledger.TransferID) (uint64, bool) {
	if [8]byte(id[:8]) != t.tag {
		return 0, false
	}
	return binary.BigEndian.Uint64(id[8:]), true
}
