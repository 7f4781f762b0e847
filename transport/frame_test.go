package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// frameSeeds returns well-formed and broken streams of frames.
func frameSeeds(t testing.TB) [][]byte {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	msg, err := marshalMessage(lamportmutex.Message{Kind: lamportmutex.Release, From: "a", To: "b", Clock: 7, Payload: []byte("block")})
	if err != nil {
		t.Fatal(err)
	}
	writeSeqFrame(w, frameData, 1, msg)
	writePing(w)
	writeSeqFrame(w, frameAck, 1, nil)
	w.Write(goodbyeFrame)
	w.Flush()
	return [][]byte{
		b.Bytes(),
		{0, 0, 0, 1, frameGoodbye, 0, 0, 0, 2, frameGoodbye, 0}, // a GOODBYE, then one too long
		{0, 0, 0, 0},             // empty frame
		{0xff, 0xff, 0xff, 0xff}, // huge length
		{0, 0, 0, 9, 1, 0, 0},    // truncated
		{0, 0, 0, 10, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xc1}, // bad msgpack
	}
}

const fuzzFrameLimit = 64

// FuzzReadFrame feeds arbitrary bytes to the frame decoder and to the
// parsers of both directions' frames: no panic, no frame over the limit,
// only the types each direction may send, in their exact sizes, and every
// message that decodes survives a round trip.
func FuzzReadFrame(f *testing.F) {
	for _, s := range frameSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for range 16 {
			body, err := readFrame(r, fuzzFrameLimit, buf)
			if err != nil {
				return
			}
			if len(body) == 0 || len(body) > fuzzFrameLimit {
				t.Fatalf("frame of %d bytes accepted", len(body))
			}
			buf = body
			if typ, _, err := parseAcceptorFrame(body); err == nil {
				if !(typ == frameAck && len(body) == seqFrameSize || typ == frameGoodbye && len(body) == 1) {
					t.Fatalf("acceptor frame %x accepted as type %d", body, typ)
				}
			}
			typ, _, rest, err := parseDialerFrame(body)
			if err == nil && typ != frameData && (typ != framePing && typ != frameGoodbye || len(body) != 1) {
				t.Fatalf("dialer frame %x accepted as type %d", body, typ)
			}
			if err != nil || typ != frameData {
				continue
			}
			m, err := unmarshalMessage(rest)
			if err != nil {
				continue
			}
			again, err := marshalMessage(m)
			if err != nil {
				t.Fatalf("re-encoding %v: %v", m, err)
			}
			m2, err := unmarshalMessage(again)
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("round trip of %v gave %v, %v", m, m2, err)
			}
		}
	})
}

func TestReadFrameLimits(t *testing.T) {
	// The length is checked before anything is read or allocated: the
	// reader holds only the 4-byte prefix.
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{[]byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{[]byte{0, 0, 0, fuzzFrameLimit + 1}, ErrFrameTooLarge},
		{[]byte{0, 0, 0, 0}, ErrProtocol},
		{[]byte{0, 0, 0, 5, 1}, io.ErrUnexpectedEOF},
		{[]byte{0, 0}, io.ErrUnexpectedEOF},
	} {
		_, err := readFrame(bufio.NewReader(bytes.NewReader(tc.in)), fuzzFrameLimit, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("readFrame(%x) = %v, want %v", tc.in, err, tc.want)
		}
	}
	body, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 2, 3, 4})), fuzzFrameLimit, nil)
	if err != nil || !bytes.Equal(body, []byte{3, 4}) {
		t.Errorf("readFrame = %x, %v", body, err)
	}
	if _, _, _, err := parseSeqFrame([]byte{frameAck, 1}); !errors.Is(err, ErrProtocol) {
		t.Errorf("short ACK: %v", err)
	}
}

// TestParseStreamFrames: each direction accepts only its own frame types,
// each in its exact size.
func TestParseStreamFrames(t *testing.T) {
	ack := []byte{frameAck, 0, 0, 0, 0, 0, 0, 0, 7}
	data := append([]byte{frameData, 0, 0, 0, 0, 0, 0, 0, 3}, 0x90)
	for _, tc := range []struct {
		body               []byte
		dialer, acceptor   byte // the type accepted, or 0 for a refusal
		dialSeq, acceptSeq uint64
	}{
		{[]byte{frameGoodbye}, frameGoodbye, frameGoodbye, 0, 0},
		{[]byte{framePing}, framePing, 0, 0, 0},
		{ack, 0, frameAck, 0, 7},
		{data, frameData, 0, 3, 0},
		{[]byte{frameGoodbye, 0}, 0, 0, 0, 0},
		{[]byte{framePing, 0}, 0, 0, 0, 0},
		{ack[:8], 0, 0, 0, 0},
		{append(ack, 0), 0, 0, 0, 0},
		{[]byte{7}, 0, 0, 0, 0},
		{nil, 0, 0, 0, 0},
	} {
		typ, seq, _, err := parseDialerFrame(tc.body)
		if tc.dialer == 0 && !errors.Is(err, ErrProtocol) || tc.dialer != 0 && (err != nil || typ != tc.dialer || seq != tc.dialSeq) {
			t.Errorf("parseDialerFrame(%x) = %d, %d, %v; want type %d", tc.body, typ, seq, err, tc.dialer)
		}
		typ, seq, err = parseAcceptorFrame(tc.body)
		if tc.acceptor == 0 && !errors.Is(err, ErrProtocol) || tc.acceptor != 0 && (err != nil || typ != tc.acceptor || seq != tc.acceptSeq) {
			t.Errorf("parseAcceptorFrame(%x) = %d, %d, %v; want type %d", tc.body, typ, seq, err, tc.acceptor)
		}
	}
}
