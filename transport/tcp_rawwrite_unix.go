//go:build unix

package transport

import (
	"errors"
	"net"
	"syscall"
)

// rawWriter makes single non-blocking write attempts on a socket.
type rawWriter struct {
	rc  syscall.RawConn
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// newRawWriter returns a rawWriter for c, or nil if c has no file
// descriptor to write to.
func newRawWriter(c net.Conn) *rawWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = func(fd uintptr) bool {
		w.n, w.err = syscall.Write(int(fd), w.buf)
		return true // one attempt: never wait for the socket
	}
	return w
}

// try writes as much of b as the socket takes at once and returns how
// much that was. A full socket buffer is not an error.
func (w *rawWriter) try(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	w.buf = b
	err := w.rc.Write(w.fn)
	w.buf = nil
	if err != nil {
		return 0, err
	}
	n, err := max(w.n, 0), w.err
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		err = nil
	}
	return n, err
}
