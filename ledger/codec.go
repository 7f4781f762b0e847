package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// The canonical block encoding, version 2. All integers are big-endian;
// strings are a uint32 byte length followed by the bytes.
//
//	version  uint8  (2)
//	kind     uint8  (0 genesis, 1 transfer)
//	height   uint64
//	prev     [32]byte
//	clock    uint64
//	genesis:  count uint32, then count × (id string, balance int64, public key [32]byte)
//	transfer: id [16]byte, from string, to string, amount int64
//	hash     [32]byte   (not part of the hashed body)
//	sigLen   uint8      (0 or 64; not part of the hashed body)
//	sig      [sigLen]byte
//
// The hash is SHA-256 over everything before it. The same bytes are the
// release payload on the wire and the record payload in the file store.
const (
	blockVersion  = 2
	kindGenesis   = 0
	kindTransfer  = 1
	headerSize    = 1 + 1 + 8 + len(Hash{}) + 8
	minStringSize = 4
	minAccount    = minStringSize + 1 + 8 + ed25519.PublicKeySize
)

// MaxBlockSize bounds an encoded block; decoding rejects longer input.
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
			dst = append(dst, a.PublicKey...)
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

// AppendBinary appends the encoding of b (body, Hash and Sig) to dst. It
// fails only for a Sig that is neither empty nor SigSize bytes, or a
// genesis account key that is not ed25519.PublicKeySize bytes.
func (b Block) AppendBinary(dst []byte) ([]byte, error) {
	if len(b.Sig) != 0 && len(b.Sig) != SigSize {
		return nil, fmt.Errorf("%w: seal of %d bytes", ErrMalformedBlock, len(b.Sig))
	}
	for _, a := range b.Accounts {
		if len(a.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: public key of %d bytes for %q", ErrMalformedBlock, len(a.PublicKey), a.ID)
		}
	}
	dst = b.appendBody(dst)
	dst = append(dst, b.Hash[:]...)
	dst = append(dst, byte(len(b.Sig)))
	return append(dst, b.Sig...), nil
}

// MarshalBinary returns the encoding of b: the release payload and the
// store record; see AppendBinary for its errors.
func (b Block) MarshalBinary() ([]byte, error) { return b.AppendBinary(make([]byte, 0, 192)) }

// UnmarshalBinary decodes data, one encoded block, into b. It checks the
// structure only (the version, every length, no trailing bytes), not the
// hash or the links: a Chain does that. It never panics. Errors wrap
// ErrMalformedBlock.
func (b *Block) UnmarshalBinary(data []byte) error {
	d, err := decodeBlock(data)
	if err != nil {
		return err
	}
	*b = d
	return nil
}

// decodeBlock decodes one encoded block. It checks the structure only (the
// version, every length, no trailing bytes), not the hash or the links: a
// Chain does that. It never panics, and it bounds every length by the
// remaining input before allocating. Errors wrap ErrMalformedBlock.
func decodeBlock(data []byte) (Block, error) {
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
				if p := d.take(ed25519.PublicKeySize); p != nil {
					b.Accounts[i].PublicKey = ed25519.PublicKey(bytes.Clone(p))
				}
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
	switch n := d.byte(); {
	case d.err != nil:
	case n == SigSize:
		b.Sig = bytes.Clone(d.take(SigSize))
	case n != 0:
		d.fail("seal of %d bytes", n)
	}
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
