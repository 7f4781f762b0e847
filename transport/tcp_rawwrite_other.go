//go:build !unix

package transport

import "net"

// rawWriter is not available on this platform: only the writer goroutine
// writes.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (*rawWriter) try([]byte) (int, error) { return 0, nil }
