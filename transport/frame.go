package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types of an established stream (see the wire format on TCP).
const (
	frameData byte = 1 // type, seq, msgpack message: dialer to acceptor
	frameAck  byte = 2 // type, cumulative seq: acceptor to dialer
	framePing byte = 3 // type only: dialer to acceptor, keeps an idle stream alive
)

const (
	// frameLenSize is the size of the big-endian length prefix of a frame.
	frameLenSize = 4
	// seqFrameSize is the body size of an ACK frame and the header size of a
	// DATA frame: a type byte and a big-endian uint64.
	seqFrameSize = 1 + 8
	// maxHandshakeFrame bounds the hello and welcome frames.
	maxHandshakeFrame = 8 << 10
)

// ErrFrameTooLarge is returned (wrapped) for a frame whose length prefix
// exceeds the limit, and by Send for a message that would make such a frame.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// ErrProtocol is returned (wrapped) when a peer breaks the stream protocol:
// an empty or unknown frame, a sequence gap, an acknowledgement of something
// never sent, a forged sender.
var ErrProtocol = errors.New("transport: protocol violation")

// readFrame reads one length-prefixed frame from r. The length is checked
// against max before anything is allocated. buf is reused when it is large
// enough; the returned body aliases it.
func readFrame(r *bufio.Reader, max int, buf []byte) ([]byte, error) {
	var hdr [frameLenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// writeFrame writes body as one frame.
func writeFrame(w *bufio.Writer, body []byte) error {
	var hdr [frameLenSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
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

// parseSeqFrame splits the body of a DATA or ACK frame into its type,
// sequence number and the rest.
func parseSeqFrame(body []byte) (typ byte, seq uint64, rest []byte, err error) {
	if len(body) < seqFrameSize {
		return 0, 0, nil, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), body[0])
	}
	return body[0], binary.BigEndian.Uint64(body[1:seqFrameSize]), body[seqFrameSize:], nil
}
