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
	w.Flush()
	return [][]byte{
		b.Bytes(),
		{0, 0, 0, 0},             // empty frame
		{0xff, 0xff, 0xff, 0xff}, // huge length
		{0, 0, 0, 9, 1, 0, 0},    // truncated
		{0, 0, 0, 10, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xc1}, // bad msgpack
	}
}

const fuzzFrameLimit = 64

// FuzzReadFrame feeds arbitrary bytes to the frame decoder and the DATA
// frame parser: no panic, no frame over the limit, and every message that
// decodes survives a round trip.
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
			typ, _, rest, err := parseSeqFrame(body)
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
