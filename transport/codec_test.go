package transport

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

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
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unmarshal error %v is not ErrMalformed", err)
			}
			return
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
