package ledger

import (
	"encoding/binary"
	"fmt"
)

// syncOp says what a catch-up message is.
type syncOp uint8

// The catch-up messages, carried by the mutex's application channel
// (the mutex's Send and HandleMessage).
const (
	// opHead tells a peer our head. The peer sends us the blocks we lack
	// (opBlocks) if it has more; with a Round, it then answers (opAnswer).
	opHead syncOp = iota + 1
	// opAnswer answers an opHead of the given Round with the answerer's
	// head, after every block it sent for it.
	opAnswer
	// opBlocks carries consecutive blocks, in chain order, as a batch.
	opBlocks
	// opFetch asks a peer for every block after our head, also those it
	// sent before (this node dropped some). It wants no answer.
	opFetch
)

func (op syncOp) String() string {
	switch op {
	case opHead:
		return "head"
	case opAnswer:
		return "answer"
	case opBlocks:
		return "blocks"
	case opFetch:
		return "fetch"
	}
	return fmt.Sprintf("syncOp(%d)", uint8(op))
}

// syncMsg is one catch-up message. All integers are big-endian.
//
//	magic    uint8  ('S')
//	version  uint8  (2)
//	op       uint8
//	opHead, opAnswer, opFetch: round uint64, height uint64, hash [32]byte, genesis [32]byte
//	opBlocks:         a batch (see EncodeBatch)
type syncMsg struct {
	op      syncOp
	genesis Hash   // opHead, opAnswer, opFetch: the sender's ledger, which must be ours
	round   uint64 // opHead: 0 for an announcement that wants no answer
	height  uint64
	hash    Hash
	blocks  []Block // opBlocks
}

const (
	syncMagic   = 'S'
	syncVersion = 2
	syncHeader  = 3
	syncHeadLen = syncHeader + len(Hash{}) + 8 + 8 + len(Hash{})
)

// encodeSync encodes m.
func encodeSync(m syncMsg) ([]byte, error) {
	buf := []byte{syncMagic, syncVersion, byte(m.op)}
	switch m.op {
	case opHead, opAnswer, opFetch:
		buf = binary.BigEndian.AppendUint64(buf, m.round)
		buf = binary.BigEndian.AppendUint64(buf, m.height)
		buf = append(buf, m.hash[:]...)
		return append(buf, m.genesis[:]...), nil
	case opBlocks:
		batch, err := EncodeBatch(m.blocks)
		if err != nil {
			return nil, err
		}
		return append(buf, batch...), nil
	}
	return nil, fmt.Errorf("ledger: encode catch-up message: unknown op %d", m.op)
}

// decodeSync decodes a catch-up message. It checks the structure only; the
// blocks are verified when they are inserted. Errors wrap
// ErrMalformedBlock.
func decodeSync(data []byte) (syncMsg, error) {
	if len(data) < syncHeader || data[0] != syncMagic || data[1] != syncVersion {
		return syncMsg{}, fmt.Errorf("%w: not a catch-up message", ErrMalformedBlock)
	}
	m := syncMsg{op: syncOp(data[2])}
	switch m.op {
	case opHead, opAnswer, opFetch:
		if len(data) != syncHeadLen {
			return syncMsg{}, fmt.Errorf("%w: %s message of %d bytes, want %d", ErrMalformedBlock, m.op, len(data), syncHeadLen)
		}
		d := decoder{buf: data[syncHeader:]}
		m.round, m.height = d.uint64(), d.uint64()
		d.bytes(m.hash[:])
		d.bytes(m.genesis[:])
		return m, nil
	case opBlocks:
		blocks, err := DecodeBatch(data[syncHeader:])
		if err != nil {
			return syncMsg{}, err
		}
		for i := 1; i < len(blocks); i++ {
			if blocks[i].Height != blocks[i-1].Height+1 {
				return syncMsg{}, fmt.Errorf("%w: catch-up blocks at heights %d then %d", ErrMalformedBlock,
					blocks[i-1].Height, blocks[i].Height)
			}
		}
		m.blocks = blocks
		return m, nil
	}
	return syncMsg{}, fmt.Errorf("%w: unknown catch-up op %d", ErrMalformedBlock, data[2])
}
