package transport

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// ErrMalformed is returned (wrapped) when bytes received from a peer do not
// decode to a valid message.
var ErrMalformed = errors.New("transport: malformed message")

// wireMessage is the on-the-wire form of lamportmutex.Message: a msgpack
// array [kind, from, to, clock, payload, incarnation], with the payload as
// binary.
type wireMessage struct {
	//lint:ignore U1000 read by the msgpack codec through its tag
	_struct     bool `codec:",toarray"` // encode as a msgpack array
	Kind        uint8
	From        string
	To          string
	Clock       uint64
	Payload     []byte
	Incarnation uint64
}

// A message is always a msgpack fixarray of wireFields elements; the
// decoder would accept other shapes (a map, a shorter array), so
// unmarshalMessage checks the first byte.
const (
	wireFields = 6
	wireArray  = 0x90 | wireFields
)

// maxDecodeDepth bounds nesting; a message is a flat array.
const maxDecodeDepth = 8

// newMsgpackHandle returns the handle every encoder and decoder of the
// package uses. Decoding never pre-allocates more than MaxInitLen elements
// for a length read off the wire.
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

// marshalMessage encodes m.
func marshalMessage(m lamportmutex.Message) ([]byte, error) {
	w := wireMessage{Kind: uint8(m.Kind), From: m.From, To: m.To, Clock: m.Clock, Payload: m.Payload, Incarnation: m.Incarnation}
	var b []byte
	if err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(&w); err != nil {
		return nil, fmt.Errorf("transport: encode %v: %w", m, err)
	}
	return b, nil
}

// unmarshalMessage decodes b, which must hold exactly one message of a kind
// that travels between peers (PeerUp never does).
func unmarshalMessage(b []byte) (lamportmutex.Message, error) {
	if len(b) == 0 || b[0] != wireArray {
		return lamportmutex.Message{}, fmt.Errorf("%w: not a %d-element array", ErrMalformed, wireFields)
	}
	var w wireMessage
	dec := codec.NewDecoderBytes(b, msgpackHandle)
	if err := dec.Decode(&w); err != nil {
		return lamportmutex.Message{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if n := dec.NumBytesRead(); n != len(b) {
		return lamportmutex.Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	k := lamportmutex.Kind(w.Kind)
	if !k.Valid() || k == lamportmutex.PeerUp {
		return lamportmutex.Message{}, fmt.Errorf("%w: kind %d", ErrMalformed, w.Kind)
	}
	return lamportmutex.Message{Kind: k, From: w.From, To: w.To, Clock: w.Clock, Payload: w.Payload, Incarnation: w.Incarnation}, nil
}
