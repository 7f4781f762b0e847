package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// ErrMalformed is returned (wrapped) when bytes received from a peer do not
// decode to a valid message.
var ErrMalformed = errors.New("transport: malformed message")

// A message travels as a msgpack fixarray of wireFields elements:
//
//	[kind, from, to, clock, payload, incarnation]
//	 uint  str   str uint   bin|nil  uint
//
// The encoder below is hand-written for this one shape (a generic,
// reflection-based encoder per message cost more than the rest of a send).
// It writes exactly the bytes github.com/hashicorp/go-msgpack/v2 writes for
// the equivalent `codec:",toarray"` struct with WriteExt set: every integer
// and length in its shortest form, str8 for strings of 32 to 255 bytes, and
// a nil payload as msgpack nil (an empty one as a zero-length bin).
//
// The decoder accepts only that canonical form, so every message it accepts
// re-encodes to the same bytes. Lengths are checked against the bytes
// actually present before anything is allocated.
const (
	wireFields = 6
	wireArray  = 0x90 | wireFields
)

// msgpack format bytes used by the message codec.
const (
	mpNil      = 0xc0
	mpBin8     = 0xc4
	mpBin16    = 0xc5
	mpBin32    = 0xc6
	mpUint8    = 0xcc
	mpUint16   = 0xcd
	mpUint32   = 0xce
	mpUint64   = 0xcf
	mpStr8     = 0xd9
	mpStr16    = 0xda
	mpStr32    = 0xdb
	mpFixStr   = 0xa0 // | length, for lengths below 32
	mpFixStrHi = 0xbf
)

// maxDecodeDepth bounds nesting for the handshake decoder; a message is a
// flat array.
const maxDecodeDepth = 8

// newMsgpackHandle returns the handle the handshake's encoder and decoder
// use. Decoding never pre-allocates more than MaxInitLen elements for a
// length read off the wire.
func newMsgpackHandle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.WriteExt = true // str and bin are distinct types on the wire
	h.RawToString = false
	h.MaxInitLen = 4096
	h.MaxDepth = maxDecodeDepth
	h.ErrorIfNoField = true
	return h
}

var msgpackHandle = newMsgpackHandle()

// messageSize returns the length of m's encoding.
func messageSize(m lamportmutex.Message) int {
	n := 1 + uintSize(uint64(m.Kind)) + strSize(len(m.From)) + strSize(len(m.To)) + uintSize(m.Clock) + uintSize(m.Incarnation)
	if m.Payload == nil {
		return n + 1
	}
	return n + binHeaderSize(len(m.Payload)) + len(m.Payload)
}

func uintSize(v uint64) int {
	switch {
	case v <= math.MaxInt8:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	default:
		return 9
	}
}

func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	default:
		return 5 + n
	}
}

func binHeaderSize(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	default:
		return 5
	}
}

// appendMessage appends m's encoding to dst.
func appendMessage(dst []byte, m lamportmutex.Message) []byte {
	dst = append(dst, wireArray)
	dst = appendUint(dst, uint64(m.Kind))
	dst = appendStr(dst, m.From)
	dst = appendStr(dst, m.To)
	dst = appendUint(dst, m.Clock)
	dst = appendBin(dst, m.Payload)
	return appendUint(dst, m.Incarnation)
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= math.MaxInt8:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, mpUint8, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, mpUint16), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, mpUint32), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, mpUint64), v)
	}
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, mpFixStr|byte(n))
	case n <= math.MaxUint8:
		b = append(b, mpStr8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, mpStr16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, mpStr32), uint32(n))
	}
	return append(b, s...)
}

func appendBin(b, p []byte) []byte {
	if p == nil {
		return append(b, mpNil)
	}
	switch n := len(p); {
	case n <= math.MaxUint8:
		b = append(b, mpBin8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, mpBin16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, mpBin32), uint32(n))
	}
	return append(b, p...)
}

// marshalMessage encodes m into a new slice of exactly its size.
func marshalMessage(m lamportmutex.Message) ([]byte, error) {
	if len(m.From) > math.MaxUint32 || len(m.To) > math.MaxUint32 || len(m.Payload) > math.MaxUint32 {
		return nil, fmt.Errorf("transport: encode %v: field longer than 4 GiB", m)
	}
	return appendMessage(make([]byte, 0, messageSize(m)), m), nil
}

// unmarshalMessage decodes b, which must hold exactly one message of a kind
// that travels between peers (PeerUp never does). The message does not
// alias b.
func unmarshalMessage(b []byte) (lamportmutex.Message, error) {
	return decodeMessage(b, "", "")
}

// decodeMessage is unmarshalMessage, returning the strings from and to
// themselves (instead of allocating copies) for a From or To equal to them.
func decodeMessage(b []byte, from, to string) (lamportmutex.Message, error) {
	d := msgDecoder{b: b}
	if len(b) == 0 || b[0] != wireArray {
		return lamportmutex.Message{}, fmt.Errorf("%w: not a %d-element array", ErrMalformed, wireFields)
	}
	d.i = 1
	kind := d.uint("kind")
	m := lamportmutex.Message{Kind: lamportmutex.Kind(kind)}
	m.From = d.str("from", from)
	m.To = d.str("to", to)
	m.Clock = d.uint("clock")
	m.Payload = d.bin("payload")
	m.Incarnation = d.uint("incarnation")
	if d.err != nil {
		return lamportmutex.Message{}, d.err
	}
	if d.i != len(b) {
		return lamportmutex.Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-d.i)
	}
	if kind > math.MaxUint8 || !m.Kind.Valid() || m.Kind == lamportmutex.PeerUp || m.Kind == lamportmutex.PeerDown {
		return lamportmutex.Message{}, fmt.Errorf("%w: kind %d", ErrMalformed, kind)
	}
	return m, nil
}

// msgDecoder reads the fields of one message from b. After the first error
// every read returns a zero value; err says what went wrong.
type msgDecoder struct {
	b   []byte
	i   int
	err error
}

func (d *msgDecoder) fail(field string, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
	}
}

// take returns the next n bytes, or fails if fewer are left.
func (d *msgDecoder) take(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.i) {
		d.fail(field, "%d bytes needed, %d left", n, len(d.b)-d.i)
		return nil
	}
	s := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// byte1 returns the next byte, or fails at the end of input.
func (d *msgDecoder) byte1(field string) (byte, bool) {
	p := d.take(field, 1)
	if d.err != nil {
		return 0, false
	}
	return p[0], true
}

// uint reads a canonically encoded unsigned integer.
func (d *msgDecoder) uint(field string) uint64 {
	c, ok := d.byte1(field)
	if !ok {
		return 0
	}
	var v, lo uint64
	switch {
	case c <= math.MaxInt8:
		return uint64(c)
	case c == mpUint8:
		v, lo = d.be(field, 1), math.MaxInt8
	case c == mpUint16:
		v, lo = d.be(field, 2), math.MaxUint8
	case c == mpUint32:
		v, lo = d.be(field, 4), math.MaxUint16
	case c == mpUint64:
		v, lo = d.be(field, 8), math.MaxUint32
	default:
		d.fail(field, "format 0x%02x is not an unsigned integer", c)
		return 0
	}
	if d.err == nil && v <= lo {
		d.fail(field, "%d not in its shortest form (0x%02x)", v, c)
	}
	return v
}

// be reads an n-byte big-endian unsigned integer.
func (d *msgDecoder) be(field string, n int) uint64 {
	p := d.take(field, uint64(n))
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v
}

// length reads the length that follows format byte c, of n bytes, and
// checks that it is in its shortest form given the next shorter form's
// limit lo.
func (d *msgDecoder) length(field string, c byte, n int, lo uint64) uint64 {
	l := d.be(field, n)
	if d.err == nil && l <= lo {
		d.fail(field, "length %d not in its shortest form (0x%02x)", l, c)
	}
	return l
}

// str reads a canonically encoded str; if its bytes equal known, known
// itself is returned.
func (d *msgDecoder) str(field, known string) string {
	c, ok := d.byte1(field)
	if !ok {
		return ""
	}
	var n uint64
	switch {
	case c >= mpFixStr && c <= mpFixStrHi:
		n = uint64(c &^ mpFixStr)
	case c == mpStr8:
		n = d.length(field, c, 1, 31)
	case c == mpStr16:
		n = d.length(field, c, 2, math.MaxUint8)
	case c == mpStr32:
		n = d.length(field, c, 4, math.MaxUint16)
	default:
		d.fail(field, "format 0x%02x is not a str", c)
		return ""
	}
	p := d.take(field, n)
	if d.err != nil {
		return ""
	}
	if string(p) == known {
		return known
	}
	return string(p)
}

// bin reads a canonically encoded bin, or nil. The result is a copy.
func (d *msgDecoder) bin(field string) []byte {
	c, ok := d.byte1(field)
	if !ok {
		return nil
	}
	var n uint64
	switch c {
	case mpNil:
		return nil
	case mpBin8:
		n = d.be(field, 1)
	case mpBin16:
		n = d.length(field, c, 2, math.MaxUint8)
	case mpBin32:
		n = d.length(field, c, 4, math.MaxUint16)
	default:
		d.fail(field, "format 0x%02x is not a bin", c)
		return nil
	}
	p := d.take(field, n)
	if d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}
