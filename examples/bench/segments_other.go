//go:build !linux

package main

// segmentsMethod says how tcpSockets counts segments, for the report.
const segmentsMethod = "not counted: counting TCP segments needs Linux"

// sockCount is what one TCP socket has sent.
type sockCount struct {
	segs, dataSegs uint32
}

func tcpSockets() (map[string]sockCount, error) { return nil, errNoSegments }

func segmentsSent(before, after map[string]sockCount) (segs, dataSegs uint64, err error) {
	return 0, 0, errNoSegments
}

func hostOutSegs() (uint64, error) { return 0, errNoSegments }
