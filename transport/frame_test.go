package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
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
	writeSeqFrame(w, frameResume, 3, nil)
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

// FuzzReadFrame feeds arbitrary bytes to the frame decoder, to the parser
// of a stream's frames and to the RESUME parser: no panic, no frame over
// the limit, only the types each may accept, in their exact sizes, and
// every message that decodes survives a round trip.
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
			if _, err := parseResumeFrame(body); err == nil && (body[0] != frameResume || len(body) != seqFrameSize) {
				t.Fatalf("frame %x accepted as RESUME", body)
			}
			if seq, err := readResume(bytes.NewReader(data)); err == nil && (len(data) < frameLenSize+seqFrameSize || data[frameLenSize] != frameResume) {
				t.Fatalf("stream %x read as RESUME %d", data, seq)
			}
			typ, _, rest, err := parseStreamFrame(body)
			if err == nil && typ != frameData && (typ != framePing && typ != frameGoodbye || len(body) != 1) && (typ != frameAck || len(body) != seqFrameSize) {
				t.Fatalf("stream frame %x accepted as type %d", body, typ)
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

// TestParseStreamFrames: a stream accepts DATA, ACK, PING and GOODBYE, each
// in its exact size, and RESUME only as the dialer's last handshake frame.
func TestParseStreamFrames(t *testing.T) {
	ack := []byte{frameAck, 0, 0, 0, 0, 0, 0, 0, 7}
	resume := []byte{frameResume, 0, 0, 0, 0, 0, 0, 0, 9}
	data := append([]byte{frameData, 0, 0, 0, 0, 0, 0, 0, 3}, 0x90)
	for _, tc := range []struct {
		body   []byte
		stream byte // the type accepted, or 0 for a refusal
		seq    uint64
		resume bool
	}{
		{[]byte{frameGoodbye}, frameGoodbye, 0, false},
		{[]byte{framePing}, framePing, 0, false},
		{ack, frameAck, 7, false},
		{data, frameData, 3, false},
		{resume, 0, 9, true},
		{[]byte{frameGoodbye, 0}, 0, 0, false},
		{[]byte{framePing, 0}, 0, 0, false},
		{ack[:8], 0, 0, false},
		{append(ack, 0), 0, 0, false},
		{resume[:8], 0, 0, false},
		{append(resume, 0), 0, 0, false},
		{[]byte{7}, 0, 0, false},
		{nil, 0, 0, false},
	} {
		typ, seq, _, err := parseStreamFrame(tc.body)
		if tc.stream == 0 && !errors.Is(err, ErrProtocol) || tc.stream != 0 && (err != nil || typ != tc.stream || seq != tc.seq) {
			t.Errorf("parseStreamFrame(%x) = %d, %d, %v; want type %d", tc.body, typ, seq, err, tc.stream)
		}
		seq, err = parseResumeFrame(tc.body)
		if !tc.resume && !errors.Is(err, ErrProtocol) || tc.resume && (err != nil || seq != tc.seq) {
			t.Errorf("parseResumeFrame(%x) = %d, %v; want resume %v", tc.body, seq, err, tc.resume)
		}
		framed := append(binary.BigEndian.AppendUint32(nil, uint32(len(tc.body))), tc.body...)
		seq, err = readResume(bytes.NewReader(framed))
		if tc.resume != (err == nil) || tc.resume && seq != tc.seq {
			t.Errorf("readResume(%x) = %d, %v; want resume %v", framed, seq, err, tc.resume)
		}
	}
}

// writeSeqFrame writes a frame of type typ holding seq, followed by msg
// (which is empty for an ACK).
func writeSeqFrame(w *bufio.Writer, typ byte, seq uint64, msg []byte) error {
	var hdr [frameLenSize + seqFrameSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(seqFrameSize+len(msg)))
	hdr[frameLenSize] = typ
	binary.BigEndian.PutUint64(hdr[frameLenSize+1:], seq)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(msg)
	return err
}

// writePing writes a PING frame.
func writePing(w *bufio.Writer) error {
	_, err := w.Write([]byte{0, 0, 0, 1, framePing})
	return err
}
