package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// protocolVersion is the version of the wire format this package speaks.
// Version 2 added the DATA kind (application messages), version 3 the
// GOODBYE frame, version 4 one connection per pair (RESUME, kicks).
const protocolVersion uint16 = 4

// magic opens both halves of the handshake.
var magic = [4]byte{'L', 'L', 'T', 'P'}

// preambleSize is the size of magic plus the big-endian protocol version.
const preambleSize = len(magic) + 2

// Handshake errors. (A handshake from an id that is not a configured peer
// is refused with ErrUnknownPeer.) The acceptor logs the cause, wrapped with
// the peer and the values, and sends the dialer only a generic refusal (see
// refusalFor); the dialer logs the refusal it receives, wrapped in
// ErrRefused.
var (
	// ErrBadMagic means the bytes on a new connection are not this protocol.
	ErrBadMagic = errors.New("transport: bad magic")
	// ErrVersionMismatch means the peer speaks another protocol version.
	ErrVersionMismatch = errors.New("transport: protocol version mismatch")
	// ErrWrongPeer means the process at a peer's address has another id.
	ErrWrongPeer = errors.New("transport: wrong peer")
	// ErrClusterMismatch means the peer belongs to another cluster (ledger).
	ErrClusterMismatch = errors.New("transport: cluster mismatch")
	// ErrStaleIncarnation means the peer presented an incarnation older than
	// one already seen from the same id, with TLS (without TLS an older
	// incarnation is a restart).
	ErrStaleIncarnation = errors.New("transport: stale incarnation")
	// ErrPeerCertificate means that, with TLS, the peer's certificate does
	// not name exactly one member, or names another one than the peer.
	ErrPeerCertificate = errors.New("transport: peer certificate does not name peer")
	// ErrDuplicateSession means a handshake claimed a member that already
	// has a live session with another incarnation: two processes run with
	// one id. The acceptor refuses the newcomer; both sides log it.
	ErrDuplicateSession = errors.New("transport: duplicate session")
	// ErrQuarantined means the peer's incarnation was quarantined (see
	// TCP.Quarantine); another incarnation is accepted (with TLS, only a
	// later one).
	ErrQuarantined = errors.New("transport: incarnation quarantined")
	// ErrRefused wraps the reason a peer gave for refusing our handshake.
	ErrRefused = errors.New("transport: handshake refused")
)

// Refusals, the only texts an acceptor sends a dialer it refuses. They are
// generic on purpose: the dialer is not yet authenticated, so a refusal
// names no cluster, incarnation or id; the acceptor logs the details.
const (
	refusalVersion   = "protocol version mismatch"
	refusalDuplicate = "duplicate session exists"
	refusalDenied    = "handshake not accepted"
	// refusalReversed answers a kick: a hello, checked in full, from the
	// higher id of a pair, which never dials (see runKicks).
	refusalReversed = "reversed: the lower id dials"
)

// refusalFor returns the refusal sent to a dialer for err.
func refusalFor(err error) string {
	switch {
	case errors.Is(err, ErrVersionMismatch):
		return refusalVersion
	case errors.Is(err, ErrDuplicateSession):
		return refusalDuplicate
	default:
		return refusalDenied
	}
}

// maxLogged bounds the bytes of a peer-supplied string that reach a log or
// an error.
const maxLogged = 64

// printable returns s for a log: cut to maxLogged bytes (saying how long it
// was) and with everything but printable ASCII escaped, so that a peer
// cannot forge log lines or flood the log with one string.
func printable(s string) string {
	suffix := ""
	if len(s) > maxLogged {
		suffix = fmt.Sprintf("...(%d bytes)", len(s))
		s = s[:maxLogged]
	}
	q := strconv.QuoteToASCII(s)
	return q[1:len(q)-1] + suffix
}

// quoted is printable(s) in double quotes.
func quoted(s string) string { return `"` + printable(s) + `"` }

// hello is what the dialer sends after the preamble: who it is, whom it
// means to reach, its cluster identity and its incarnation.
type hello struct {
	//lint:ignore U1000 read by the msgpack codec through its tag
	_struct     bool `codec:",toarray"` // encode as a msgpack array
	From        string
	To          string
	Cluster     string
	Incarnation uint64
}

// welcome is the acceptor's answer: who it is, its incarnation and the last
// sequence number it delivered from the dialer's incarnation (0 for a new
// one). A non-empty Refusal refuses the connection and says why.
type welcome struct {
	//lint:ignore U1000 read by the msgpack codec through its tag
	_struct     bool `codec:",toarray"` // encode as a msgpack array
	From        string
	Incarnation uint64
	Resume      uint64
	Refusal     string
}

// helloCheck is what the acceptor checks a hello against.
type helloCheck struct {
	version uint16
	self    string
	cluster string
	known   func(id string) bool
}

// writePreamble writes the magic and version.
func writePreamble(w *bufio.Writer, version uint16) error {
	var p [preambleSize]byte
	copy(p[:], magic[:])
	binary.BigEndian.PutUint16(p[len(magic):], version)
	_, err := w.Write(p[:])
	return err
}

// readPreamble reads the magic and returns the version.
func readPreamble(r *bufio.Reader) (uint16, error) {
	var p [preambleSize]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return 0, err
	}
	if [4]byte(p[:4]) != magic {
		return 0, fmt.Errorf("%w %q", ErrBadMagic, p[:4])
	}
	return binary.BigEndian.Uint16(p[len(magic):]), nil
}

// encodeStruct msgpack-encodes a handshake struct.
func encodeStruct(v any) ([]byte, error) {
	var b []byte
	if err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(v); err != nil {
		return nil, fmt.Errorf("transport: encode handshake: %w", err)
	}
	return b, nil
}

// decodeStruct decodes exactly one msgpack value from b into v.
func decodeStruct(b []byte, v any) error {
	dec := codec.NewDecoderBytes(b, msgpackHandle)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if n := dec.NumBytesRead(); n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	return nil
}

// writeHello writes the dialer's half of the handshake.
func writeHello(w *bufio.Writer, version uint16, h hello) error {
	return writeHandshake(w, version, &h)
}

// writeWelcome writes the acceptor's half of the handshake.
func writeWelcome(w *bufio.Writer, version uint16, wl welcome) error {
	return writeHandshake(w, version, &wl)
}

// writeHandshake writes the preamble, then v as one frame, and flushes.
func writeHandshake(w *bufio.Writer, version uint16, v any) error {
	body, err := encodeStruct(v)
	if err != nil {
		return err
	}
	if err := writePreamble(w, version); err != nil {
		return err
	}
	if err := writeFrame(w, body); err != nil {
		return err
	}
	return w.Flush()
}

// readHello reads and checks the dialer's half of the handshake. The
// returned hello holds whatever could be decoded even when err is not nil,
// so that refusals can name the peer. refuse reports whether the dialer
// deserves a welcome carrying the refusal (false for bytes that are not
// this protocol at all).
func readHello(r *bufio.Reader, c helloCheck) (h hello, refuse bool, err error) {
	version, err := readPreamble(r)
	if err != nil {
		return h, false, err
	}
	body, err := readFrame(r, maxHandshakeFrame, nil)
	if err != nil {
		if version != c.version {
			return h, true, fmt.Errorf("%w: peer speaks version %d, we speak %d", ErrVersionMismatch, version, c.version)
		}
		return h, false, fmt.Errorf("reading hello: %w", err)
	}
	derr := decodeStruct(body, &h)
	if version != c.version {
		if derr != nil {
			h = hello{}
		}
		return h, true, fmt.Errorf("%w: peer %s speaks version %d, we speak %d", ErrVersionMismatch, quoted(h.From), version, c.version)
	}
	if derr != nil {
		return hello{}, true, fmt.Errorf("reading hello: %w", derr)
	}
	switch {
	case h.From == c.self || !c.known(h.From):
		return h, true, fmt.Errorf("%w %s (we are %q)", ErrUnknownPeer, quoted(h.From), c.self)
	case h.To != c.self:
		return h, true, fmt.Errorf("%w: peer %q dialed %s, but this is %q", ErrWrongPeer, h.From, quoted(h.To), c.self)
	case h.Cluster != c.cluster:
		return h, true, fmt.Errorf("%w: peer %q is in cluster %s, we are in %q", ErrClusterMismatch, h.From, quoted(h.Cluster), c.cluster)
	case h.Incarnation == 0:
		return h, true, fmt.Errorf("%w: peer %q sent incarnation 0", ErrProtocol, h.From)
	}
	return h, false, nil
}

// readWelcome reads the acceptor's half of the handshake and checks that it
// comes from peer and accepts us.
func readWelcome(r *bufio.Reader, version uint16, peer string) (welcome, error) {
	var wl welcome
	v, err := readPreamble(r)
	if err != nil {
		return wl, fmt.Errorf("reading welcome from %q: %w", peer, err)
	}
	body, err := readFrame(r, maxHandshakeFrame, nil)
	if err != nil {
		if v != version {
			return wl, fmt.Errorf("%w: peer %q speaks version %d, we speak %d", ErrVersionMismatch, peer, v, version)
		}
		return wl, fmt.Errorf("reading welcome from %q: %w", peer, err)
	}
	derr := decodeStruct(body, &wl)
	switch {
	case derr == nil && wl.Refusal == refusalDuplicate:
		return wl, fmt.Errorf("%w by %q: %w exists", ErrRefused, peer, ErrDuplicateSession)
	case derr == nil && wl.Refusal != "":
		return wl, fmt.Errorf("%w by %q: %s", ErrRefused, peer, quoted(wl.Refusal))
	case v != version:
		return wl, fmt.Errorf("%w: peer %q speaks version %d, we speak %d", ErrVersionMismatch, peer, v, version)
	case derr != nil:
		return wl, fmt.Errorf("reading welcome from %q: %w", peer, derr)
	case wl.From != peer:
		return wl, fmt.Errorf("%w: dialed %q, reached %s", ErrWrongPeer, peer, quoted(wl.From))
	case wl.Incarnation == 0:
		return wl, fmt.Errorf("%w: peer %q sent incarnation 0", ErrProtocol, peer)
	}
	return wl, nil
}
