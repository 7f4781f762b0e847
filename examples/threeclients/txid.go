package main

import (
	"crypto/sha256"
	"encoding/binary"
	"iter"
	"sync"

	"github.com/lamportledger/lamportledger/ledger"
)

// transferIDs numbers a client's transfers. The ID of its n-th transfer is
// an 8-byte tag of the client's id followed by n (big-endian), so two runs
// of one script make the same chain, and a teacher can diff them.
//
// A number must not be reused while the ledger still knows it (see
// ledger.IDWindow): it answers a known ID with the first outcome, so a
// reused one would drop the new transfer. When the client starts, the
// numbering continues after the highest number of the client's in the
// newest blocks of its chain (recentFrom): numbers rise in the order the
// transfers were given, so the highest is among the client's last
// transfers. Where that misses one (a store that lost its unsynced tail,
// -memory, or a client whose last transfer is older than the blocks
// scanned), the ledger answers the reused ID as a duplicate or a conflict,
// and (client).submitTransfer numbers the transfer again.
type transferIDs struct {
	tag  [8]byte
	mu   sync.Mutex
	last uint64 // the highest number taken or seen
}

func newTransferIDs(client string) *transferIDs {
	sum := sha256.Sum256([]byte("lamportledger threeclients transfer ids\x00" + client))
	t := &transferIDs{}
	copy(t.tag[:], sum[:])
	return t
}

// recentFrom is the height from which a client that starts with its chain
// at head looks for its transfer numbers: the last IDWindow blocks of
// every member, so that a client of a long chain starts at once.
func recentFrom(head uint64, members int) uint64 {
	back := uint64(members) * ledger.IDWindow
	if head <= back {
		return 0
	}
	return head - back
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
// blocks. It reads them up to the first error, which it returns.
func (t *transferIDs) skipPast(blocks iter.Seq2[ledger.Block, error]) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for b, err := range blocks {
		if err != nil {
			return err
		}
		if n, ok := t.number(b.Transfer.ID); ok {
			t.last = max(t.last, n)
		}
	}
	return nil
}

// number is the number in id, if id is one of this client's.
func (t *transferIDs) number(id ledger.TransferID) (uint64, bool) {
	if [8]byte(id[:8]) != t.tag {
		return 0, false
	}
	return binary.BigEndian.Uint64(id[8:]), true
}
