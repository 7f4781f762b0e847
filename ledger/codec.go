package ledger

import (
	"encoding/binary"
	"fmt"
)

// The canonical block encoding, version 1. All integers are big-endian;
// strings are a uint32 byte length followed by the bytes.
//
//	version  uint8  (1)
//	kind     uint8  (0 genesis, 1 transfer)
//	height   uint64
//	prev     [32]byte
//	clock    uint64
//	genesis:  count uint32, then count × (id string, balance int64)
//	transfer: id [16]byte, from string, to string, amount int64
//	hash     [32]byte   (not part of the hashed body)
//
// The hash is SHA-256 over everything before it. The same bytes are the
// release payload on the wire and the record payload in the file store.
const (
	blockVersion  = 1
	kindGenesis   = 0
	kindTransfer  = 1
	headerSize    = 1 + 1 + 8 + len(Hash{}) + 8
	minStringSize = 4
	minAccount    = minStringSize + 1 + 8
)

// MaxBlockSize bounds an encoded block; DecodeBlock rejects longer input.
const MaxBlockSize = 1 << 20

// appendBody appends the hashed part of b's encoding to dst.
func (b Block) appendBody(dst []byte) []byte {
	kind := byte(kindTransfer)
	if b.IsGenesis() {
		kind = kindGenesis
	}
	dst = append(dst, blockVersion, kind)
	dst = binary.BigEndian.AppendUint64(dst, b.Height)
	dst = append(dst, b.Prev[:]...)
	dst = binary.BigEndian.AppendUint64(dst, b.Clock)
	if kind == kindGenesis {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(b.Accounts)))
		for _, a := range b.Accounts {
			dst = appendString(dst, a.ID)
			dst = binary.BigEndian.AppendUint64(dst, uint64(a.Balance))
		}
		return dst
	}
	t := b.Transfer
	dst = append(dst, t.ID[:]...)
	dst = appendString(dst, t.From)
	dst = appendString(dst, t.To)
	return binary.BigEndian.AppendUint64(dst, uint64(t.Amount))
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// AppendBinary appends the encoding of b (body and Hash) to dst.
func (b Block) AppendBinary(dst []byte) ([]byte, error) {
	dst = b.appendBody(dst)
	return append(dst, b.Hash[:]...), nil
}

// MarshalBinary returns the encoding of b: the release payload and the
// store record. It never fails.
func (b Block) MarshalBinary() ([]byte, error) { return b.AppendBinary(make([]byte, 0, 128)) }

// UnmarshalBinary decodes data into b; see DecodeBlock.
func (b *Block) UnmarshalBinary(data []byte) error {
	d, err := DecodeBlock(data)
	if err != nil {
		return err
	}
	*b = d
	return nil
}

// DecodeBlock decodes one encoded block. It checks the structure only (the
// version, every length, no trailing bytes), not the hash or the links: a
// Chain does that. It never panics, and it bounds every length by the
// remaining input before allocating. Errors wrap ErrMalformedBlock.
func DecodeBlock(data []byte) (Block, error) {
	if len(data) > MaxBlockSize {
		return Block{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedBlock, len(data), MaxBlockSize)
	}
	d := decoder{buf: data}
	var b Block
	version, kind := d.byte(), d.byte()
	if d.err == nil && version != blockVersion {
		return Block{}, fmt.Errorf("%w: unsupported version %d", ErrMalformedBlock, version)
	}
	b.Height = d.uint64()
	d.bytes(b.Prev[:])
	b.Clock = d.uint64()
	switch {
	case d.err != nil:
	case kind == kindGenesis && b.Height == 0:
		n := d.uint32()
		if d.err == nil && uint64(n) > uint64(len(d.buf)-d.off)/minAccount {
			d.fail("%d accounts do not fit in %d bytes", n, len(d.buf)-d.off)
		}
		if d.err == nil {
			b.Accounts = make([]Account, n)
			for i := range b.Accounts {
				b.Accounts[i].ID = d.string()
				b.Accounts[i].Balance = int64(d.uint64())
			}
		}
	case kind == kindTransfer && b.Height != 0:
		d.bytes(b.Transfer.ID[:])
		b.Transfer.From = d.string()
		b.Transfer.To = d.string()
		b.Transfer.Amount = int64(d.uint64())
	default:
		d.fail("kind %d at height %d", kind, b.Height)
	}
	d.bytes(b.Hash[:])
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
	if d.err != nil {
		return Block{}, d.err
	}
	return b, nil
}

// decoder reads big-endian fields; after the first error it reads zeros.
type decoder struct {
	buf []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format+" (at byte %d)", append([]any{ErrMalformedBlock}, append(args, d.off)...)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf)-d.off {
		d.fail("need %d bytes, have %d", n, len(d.buf)-d.off)
		return nil
	}
	p := d.buf[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) byte() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) uint32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) uint64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) bytes(dst []byte) { copy(dst, d.take(len(dst))) }

func (d *decoder) string() string {
	n := d.uint32()
	if d.err == nil && n > MaxIDLen {
		d.fail("string of %d bytes, more than %d", n, MaxIDLen)
	}
	return string(d.take(int(n)))
}
