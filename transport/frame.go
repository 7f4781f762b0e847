package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types of an established stream (see the TCP wire format in doc.go).
const (
	frameData byte = 1 // type, seq, msgpack message: dialer to acceptor
	frameAck  byte = 2 // type, cumulative seq: acceptor to dialer
	framePing byte = 3 // type only: dialer to acceptor, keeps an idle stream alive
	// frameGoodbye, type only, either way: the sender is closing the
	// transport (a clean exit) and sends nothing more on this connection.
	frameGoodbye byte = 4
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

// parseDialerFrame parses the body of a frame that a dialer sends: DATA
// (returning its seq and message), PING or GOODBYE.
func parseDialerFrame(body []byte) (typ byte, seq uint64, msg []byte, err error) {
	if len(body) == 0 {
		return 0, 0, nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	switch body[0] {
	case frameData:
		return parseSeqFrame(body)
	case framePing, frameGoodbye:
		if len(body) != 1 {
			return 0, 0, nil, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), body[0])
		}
		return body[0], 0, nil, nil
	}
	return 0, 0, nil, fmt.Errorf("%w: frame type %d", ErrProtocol, body[0])
}

// parseAcceptorFrame parses the body of a frame that an acceptor sends:
// ACK (returning its seq) or GOODBYE.
func parseAcceptorFrame(body []byte) (typ byte, seq uint64, err error) {
	if len(body) == 0 {
		return 0, 0, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	switch {
	case body[0] == frameAck && len(body) == seqFrameSize:
		return frameAck, binary.BigEndian.Uint64(body[1:]), nil
	case body[0] == frameGoodbye && len(body) == 1:
		return frameGoodbye, 0, nil
	}
	return 0, 0, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), body[0])
}

// parseSeqFrame splits the body of a DATA or ACK frame into its type,
// sequence number and the rest.
func parseSeqFrame(body []byte) (typ byte, seq uint64, rest []byte, err error) {
	if len(body) < seqFrameSize {
		return 0, 0, nil, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), body[0])
	}
	return body[0], binary.BigEndian.Uint64(body[1:seqFrameSize]), body[seqFrameSize:], nil
}
