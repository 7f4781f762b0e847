package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types of an established stream (see the TCP wire format in doc.go).
// Both ends of a connection send DATA, ACK, PING and GOODBYE; RESUME is the
// dialer's last handshake frame.
const (
	frameData byte = 1 // type, seq, msgpack message
	frameAck  byte = 2 // type, cumulative seq of the messages delivered
	framePing byte = 3 // type only: asks for an ACK at once
	// frameGoodbye, type only: the sender is closing the transport (a clean
	// exit) and sends nothing more on this connection.
	frameGoodbye byte = 4
	// frameResume, type and seq: the last message the dialer delivered from
	// the acceptor's incarnation; the acceptor resends what follows.
	frameResume byte = 5
)

const (
	// frameLenSize is the size of the big-endian length prefix of a frame.
	frameLenSize = 4
	// seqFrameSize is the body size of an ACK or RESUME frame and the header
	// size of a DATA frame: a type byte and a big-endian uint64.
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
	// Peek, unlike io.ReadFull into an array, leaves nothing on the heap.
	hdr, err := r.Peek(frameLenSize)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	_, _ = r.Discard(frameLenSize) // cannot fail: the bytes are buffered
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

// parseStreamFrame parses the body of a frame of an established stream:
// DATA (returning its seq and message), ACK (returning its seq), PING or
// GOODBYE, each in its exact size.
func parseStreamFrame(body []byte) (typ byte, seq uint64, msg []byte, err error) {
	if len(body) == 0 {
		return 0, 0, nil, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	switch typ := body[0]; {
	case typ == frameData:
		return parseSeqFrame(body)
	case typ == frameAck && len(body) == seqFrameSize:
		return typ, binary.BigEndian.Uint64(body[1:]), nil, nil
	case (typ == framePing || typ == frameGoodbye) && len(body) == 1:
		return typ, 0, nil, nil
	case typ == frameAck || typ == framePing || typ == frameGoodbye:
		return 0, 0, nil, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), typ)
	}
	return 0, 0, nil, fmt.Errorf("%w: frame type %d", ErrProtocol, body[0])
}

// parseResumeFrame parses the body of the dialer's RESUME frame.
func parseResumeFrame(body []byte) (seq uint64, err error) {
	if len(body) != seqFrameSize || body[0] != frameResume {
		if len(body) == 0 {
			return 0, fmt.Errorf("%w: empty frame instead of RESUME", ErrProtocol)
		}
		return 0, fmt.Errorf("%w: %d-byte frame of type %d instead of RESUME", ErrProtocol, len(body), body[0])
	}
	return binary.BigEndian.Uint64(body[1:]), nil
}

// readResume reads the dialer's RESUME frame from r, byte by byte as
// needed, so that nothing after it is consumed.
func readResume(r io.Reader) (uint64, error) {
	var b [frameLenSize + seqFrameSize]byte
	if _, err := io.ReadFull(r, b[:frameLenSize]); err != nil {
		return 0, err
	}
	if n := binary.BigEndian.Uint32(b[:]); n != seqFrameSize {
		return 0, fmt.Errorf("%w: %d-byte frame instead of RESUME", ErrProtocol, n)
	}
	if _, err := io.ReadFull(r, b[frameLenSize:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return parseResumeFrame(b[frameLenSize:])
}

// parseSeqFrame splits the body of a DATA or ACK frame into its type,
// sequence number and the rest.
func parseSeqFrame(body []byte) (typ byte, seq uint64, rest []byte, err error) {
	if len(body) < seqFrameSize {
		return 0, 0, nil, fmt.Errorf("%w: %d-byte frame of type %d", ErrProtocol, len(body), body[0])
	}
	return body[0], binary.BigEndian.Uint64(body[1:seqFrameSize]), body[seqFrameSize:], nil
}
