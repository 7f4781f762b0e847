package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// segmentsMethod says how tcpSockets counts segments, for the report.
const segmentsMethod = "the sum over this process's TCP sockets of tcpi_segs_out (TCP_INFO), data and pure ACKs alike, " +
	"so each segment on loopback counts once and other processes do not count; " +
	"\"data segs\" is tcpi_data_segs_out; \"host OutSegs\" is the Tcp OutSegs of /proc/net/snmp, machine-wide and so noisy on a shared machine"

// sockCount is what one TCP socket has sent.
type sockCount struct {
	segs, dataSegs uint32
}

// tcpSockets returns the segment counters of every TCP socket this process
// has open, by socket inode.
func tcpSockets() (map[string]sockCount, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("segments: %w", err)
	}
	out := map[string]sockCount{}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue // closed since ReadDir, or not a socket
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			continue // not a TCP socket
		}
		out[link] = sockCount{segs: info.Segs_out, dataSegs: info.Data_segs_out}
	}
	return out, nil
}

// segmentsSent returns the segments (and data segments) the sockets of
// before sent until after. Every socket must be open at both ends: a
// socket opened or closed in between would make the count unsound.
func segmentsSent(before, after map[string]sockCount) (segs, dataSegs uint64, err error) {
	if len(before) != len(after) {
		return 0, 0, fmt.Errorf("segments: %d TCP sockets before the window, %d after", len(before), len(after))
	}
	for k, b := range before {
		a, ok := after[k]
		if !ok {
			return 0, 0, fmt.Errorf("segments: socket %s closed in the window", k)
		}
		segs += uint64(a.segs - b.segs) // the counters are 32 bits and wrap
		dataSegs += uint64(a.dataSegs - b.dataSegs)
	}
	return segs, dataSegs, nil
}

// hostOutSegs returns the Tcp OutSegs counter of /proc/net/snmp: every
// segment sent by the network namespace, retransmissions excluded.
func hostOutSegs() (uint64, error) {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("segments: %w", err)
	}
	defer f.Close()
	var head []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = fields
			continue
		}
		for i, name := range head {
			if name == "OutSegs" && i < len(fields) {
				return strconv.ParseUint(fields[i], 10, 64)
			}
		}
		break
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("segments: %w", err)
	}
	return 0, fmt.Errorf("segments: no Tcp OutSegs in /proc/net/snmp")
}
