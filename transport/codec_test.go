package transport

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// codecSamples are valid messages used as seeds and in tests.
var codecSamples = []lamportmutex.Message{
	{Kind: lamportmutex.Request, From: "1", To: "2", Clock: 1},
	{Kind: lamportmutex.Reply, From: "node-b", To: "node-a", Clock: 1<<64 - 1},
	{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 300, Payload: []byte("block")},
	{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 0, Payload: []byte{}},
	{Kind: lamportmutex.Release, From: "ü", To: "\x00", Clock: 65536, Payload: bytes.Repeat([]byte{0xff}, 300)},
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range codecSamples {
		b, err := marshalMessage(m)
		if err != nil {
			t.Fatalf("marshal %v: %v", m, err)
		}
		got, err := unmarshalMessage(b)
		if err != nil {
			t.Fatalf("unmarshal %v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %#v, want %#v", got, m)
		}
	}
}

func TestUnmarshalMessageRejects(t *testing.T) {
	valid, err := marshalMessage(codecSamples[2])
	if err != nil {
		t.Fatal(err)
	}
	peerUp, err := marshalMessage(lamportmutex.Message{Kind: lamportmutex.PeerUp, From: "a", To: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":              nil,
		"truncated":          valid[:len(valid)-1],
		"trailing":           append(append([]byte(nil), valid...), 0xc0),
		"peerup":             peerUp,
		"kind 0":             {0x95, 0x00, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0},
		"kind 9":             {0x95, 0x09, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0},
		"map, unknown field": {0x81, 0xa3, 'B', 'a', 'd', 0x01},
		"huge str":           {0x95, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff},
		"huge bin":           {0x95, 0x03, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc6, 0x7f, 0xff, 0xff, 0xff},
		"7 fields":           {0x97, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0x00, 0xc0},
		"5 fields":           {0x95, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0},
		"map":                {0x81, 0xa4, 'K', 'i', 'n', 'd', 0x01},
	} {
		if _, err := unmarshalMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: unmarshal(%x) = %v, want ErrMalformed", name, b, err)
		}
	}
}

// FuzzUnmarshalMessage feeds arbitrary bytes to the decoder. It must never
// panic; an error must be ErrMalformed; a message it accepts must be of a
// kind that travels, must encode again, and must decode from that encoding
// to itself, whose encoding is then stable.
func FuzzUnmarshalMessage(f *testing.F) {
	for _, m := range codecSamples {
		b, err := marshalMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0x95, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := unmarshalMessage(data)
		ref, refErr := refDecode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unmarshal error %v is not ErrMalformed", err)
			}
			// Refused although go-msgpack decodes it: only a non-canonical
			// form or a kind that does not travel may be.
			if refErr == nil && ref.Kind.Valid() && ref.Kind != lamportmutex.PeerUp && bytes.Equal(refEncode(t, ref), data) {
				t.Fatalf("refused %x (%v), which go-msgpack writes for %#v", data, err, ref)
			}
			return
		}
		if refErr != nil || !reflect.DeepEqual(ref, m) {
			t.Fatalf("accepted %x as %#v; go-msgpack decodes %#v, %v", data, m, ref, refErr)
		}
		if known, err := decodeMessage(data, m.From, m.To); err != nil || !reflect.DeepEqual(known, m) {
			t.Fatalf("decodeMessage with known peers: %#v, %v; want %#v", known, err, m)
		}
		if !m.Kind.Valid() || m.Kind == lamportmutex.PeerUp {
			t.Fatalf("accepted kind %v", m.Kind)
		}
		b, err := marshalMessage(m)
		if err != nil {
			t.Fatalf("re-marshal %#v: %v", m, err)
		}
		m2, err := unmarshalMessage(b)
		if err != nil {
			t.Fatalf("unmarshal of re-marshalled %#v: %v", m, err)
		}
		if !reflect.DeepEqual(m2, m) {
			t.Fatalf("round trip: got %#v, want %#v", m2, m)
		}
		b2, err := marshalMessage(m2)
		if err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("encoding not stable: %x then %x (%v)", b, b2, err)
		}
	})
}

// FuzzMessageRoundTrip checks decode(encode(m)) == m for every message of a
// kind that travels, nil payloads included.
func FuzzMessageRoundTrip(f *testing.F) {
	for _, m := range codecSamples {
		f.Add(uint8(m.Kind), m.From, m.To, m.Clock, m.Payload, m.Payload == nil)
	}
	f.Add(uint8(lamportmutex.PeerUp), "a", "b", uint64(0), []byte(nil), true)
	f.Fuzz(func(t *testing.T, kind uint8, from, to string, clock uint64, payload []byte, nilPayload bool) {
		if nilPayload {
			payload = nil
		} else if payload == nil {
			payload = []byte{}
		}
		m := lamportmutex.Message{Kind: lamportmutex.Kind(kind), From: from, To: to, Clock: clock, Payload: payload}
		b, err := marshalMessage(m)
		if err != nil {
			t.Fatalf("marshal %#v: %v", m, err)
		}
		if want := refEncode(t, m); !bytes.Equal(b, want) {
			t.Fatalf("encoding of %#v:\n got %x\nwant %x", m, b, want)
		}
		got, err := unmarshalMessage(b)
		if !m.Kind.Valid() || m.Kind == lamportmutex.PeerUp {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("kind %d: unmarshal error %v, want ErrMalformed", kind, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("unmarshal of %#v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %#v, want %#v", got, m)
		}
	})
}

func BenchmarkMarshalMessage(b *testing.B) {
	m := lamportmutex.Message{Kind: lamportmutex.Release, From: "node-1", To: "node-2", Clock: 123456, Payload: make([]byte, 200)}
	b.ReportAllocs()
	for range b.N {
		if _, err := marshalMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalMessage(b *testing.B) {
	m := lamportmutex.Message{Kind: lamportmutex.Release, From: "node-1", To: "node-2", Clock: 123456, Payload: make([]byte, 200)}
	data, err := marshalMessage(m)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for range b.N {
		if _, err := unmarshalMessage(data); err != nil {
			b.Fatal(err)
		}
	}
}

// refMessage is the message as github.com/hashicorp/go-msgpack/v2 sees it:
// the reference the hand-written codec must match byte for byte.
type refMessage struct {
	//lint:ignore U1000 read by the msgpack codec through its tag
	_struct     bool `codec:",toarray"` // encode as a msgpack array
	Kind        uint8
	From        string
	To          string
	Clock       uint64
	Payload     []byte
	Incarnation uint64
}

func refEncode(t testing.TB, m lamportmutex.Message) []byte {
	t.Helper()
	r := refMessage{Kind: uint8(m.Kind), From: m.From, To: m.To, Clock: m.Clock, Payload: m.Payload, Incarnation: m.Incarnation}
	var b []byte
	if err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(&r); err != nil {
		t.Fatalf("reference encode %v: %v", m, err)
	}
	return b
}

func refDecode(b []byte) (lamportmutex.Message, error) {
	var r refMessage
	dec := codec.NewDecoderBytes(b, msgpackHandle)
	if err := dec.Decode(&r); err != nil {
		return lamportmutex.Message{}, err
	}
	if n := dec.NumBytesRead(); n != len(b) {
		return lamportmutex.Message{}, fmt.Errorf("%d trailing bytes", len(b)-n)
	}
	return lamportmutex.Message{Kind: lamportmutex.Kind(r.Kind), From: r.From, To: r.To, Clock: r.Clock, Payload: r.Payload, Incarnation: r.Incarnation}, nil
}

// checkReference requires the hand-written encoding of m to equal
// go-msgpack's, and go-msgpack to decode it back to m.
func checkReference(t testing.TB, m lamportmutex.Message) {
	t.Helper()
	b, err := marshalMessage(m)
	if err != nil {
		t.Fatalf("marshal %v: %v", m, err)
	}
	if want := refEncode(t, m); !bytes.Equal(b, want) {
		t.Fatalf("encoding of %#v:\n got %x\nwant %x", m, b, want)
	}
	if len(b) != messageSize(m) {
		t.Fatalf("messageSize(%v) = %d, encoding has %d bytes", m, messageSize(m), len(b))
	}
	got, err := refDecode(b)
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("go-msgpack decodes %x to %#v, %v; want %#v", b, got, err, m)
	}
}

// TestCodecMatchesReference checks every length and integer boundary of
// the format against go-msgpack.
func TestCodecMatchesReference(t *testing.T) {
	ints := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	lens := []int{0, 1, 31, 32, 255, 256, 65535, 65536}
	for _, v := range ints {
		checkReference(t, lamportmutex.Message{Kind: lamportmutex.Request, From: "a", To: "b", Clock: v, Incarnation: v})
	}
	for _, n := range lens {
		s := strings.Repeat("x", n)
		checkReference(t, lamportmutex.Message{Kind: lamportmutex.Release, From: s, To: s, Clock: 1, Payload: []byte(s), Incarnation: 7})
	}
	for _, m := range codecSamples {
		checkReference(t, m)
	}
}

// TestUnmarshalMessageCanonical: encodings go-msgpack would decode but never
// writes (a longer integer or length form, str for bin, bin for str) are
// refused, so that every accepted message re-encodes to the same bytes.
func TestUnmarshalMessageCanonical(t *testing.T) {
	for name, b := range map[string][]byte{
		"kind as uint8":          {0x96, 0xcc, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01},
		"clock as uint16":        {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0xcd, 0x00, 0xff, 0xc0, 0x01},
		"incarnation as uint64":  {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
		"from as str8":           {0x96, 0x01, 0xd9, 0x01, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01},
		"to as str16":            {0x96, 0x01, 0xa1, 'a', 0xda, 0x00, 0x01, 'b', 0x01, 0xc0, 0x01},
		"payload as bin16":       {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc5, 0x00, 0x01, 'x', 0x01},
		"payload as str":         {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xa1, 'x', 0x01},
		"from as bin":            {0x96, 0x01, 0xc4, 0x01, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01},
		"negative clock":         {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0xff, 0xc0, 0x01},
		"kind 256":               {0x96, 0xcd, 0x01, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01},
		"array16":                {0xdc, 0x00, 0x06, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01},
		"truncated incarnation":  {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0xcd, 0x01},
		"str32 past the end":     {0x96, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin32 past the end":     {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff},
		"missing incarnation":    {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0},
		"nil instead of string":  {0x96, 0x01, 0xc0, 0xa1, 'b', 0x01, 0xc0, 0x01},
		"bool instead of clock":  {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0xc3, 0xc0, 0x01},
		"float instead of clock": {0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0xca, 0, 0, 0, 0, 0xc0, 0x01},
	} {
		if m, err := unmarshalMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: unmarshal(%x) = %v, %v; want ErrMalformed", name, b, m, err)
		}
	}
	ok := []byte{0x96, 0x01, 0xa1, 'a', 0xa1, 'b', 0x01, 0xc0, 0x01}
	if m, err := unmarshalMessage(ok); err != nil || m.From != "a" || m.To != "b" || m.Payload != nil || m.Incarnation != 1 {
		t.Errorf("unmarshal(%x) = %v, %v", ok, m, err)
	}
}

// TestDecodeMessageDoesNotAlias: the decoded payload and strings survive
// the reuse of the input buffer.
func TestDecodeMessageDoesNotAlias(t *testing.T) {
	m := lamportmutex.Message{Kind: lamportmutex.Release, From: "from-peer", To: "to-peer", Clock: 9, Payload: []byte("payload")}
	b, err := marshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, known := range [][2]string{{"", ""}, {"from-peer", "to-peer"}} {
		buf := append([]byte(nil), b...)
		got, err := decodeMessage(buf, known[0], known[1])
		if err != nil {
			t.Fatal(err)
		}
		clear(buf)
		if !reflect.DeepEqual(got, m) {
			t.Errorf("known %q: after clearing the input got %#v, want %#v", known, got, m)
		}
	}
}

func BenchmarkDecodeMessageKnownPeers(b *testing.B) {
	m := lamportmutex.Message{Kind: lamportmutex.Reply, From: "node-1", To: "node-2", Clock: 123456, Incarnation: 1 << 40}
	data, err := marshalMessage(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		if _, err := decodeMessage(data, "node-1", "node-2"); err != nil {
			b.Fatal(err)
		}
	}
}
