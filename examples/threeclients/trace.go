package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// traceBlocksShown bounds the blocks a trace line lists for one release.
const traceBlocksShown = 3

// traceTime is the time of day on a trace line, to the millisecond.
const traceTime = "15:04:05.000"

// formatTrace is the -trace line for one event of the mutex, at now: what
// happened and what it did to the Lamport clock. sameBatch says that ev
// carries the payload the previous event listed (a RELEASE goes to every
// peer with one payload), which is then not listed again.
func formatTrace(ev lamportmutex.Event, now time.Time, sameBatch bool) string {
	m := ev.Message
	var s string
	switch {
	case m.Kind == 0:
		s = fmt.Sprintf("local event: clock %d -> %d (a release or withdrawal that sent nothing yet)", ev.Before, ev.Clock)
	case m.Kind == lamportmutex.PeerUp:
		s = fmt.Sprintf("peer %s is up (new incarnation %d): forget its old request, greet it with HELLO; clock unchanged at %d",
			quoteID(m.From), m.Incarnation, ev.Clock)
	case m.Kind == lamportmutex.Data && ev.Sent:
		s = fmt.Sprintf("sent DATA to %s (ledger catch-up, %d bytes, clock unchanged at %d)", quoteID(m.To), len(m.Payload), ev.Clock)
	case m.Kind == lamportmutex.Data:
		s = fmt.Sprintf("received DATA from %s (ledger catch-up, %d bytes, clock unchanged at %d)", quoteID(m.From), len(m.Payload), ev.Clock)
	case ev.Sent:
		s = fmt.Sprintf("sent %s@%d to %s", m.Kind, m.Clock, quoteID(m.To))
		switch {
		case ev.Clock != m.Clock && m.Kind == lamportmutex.Release:
			s += fmt.Sprintf(" (held back since the release, sent with the next message to it; clock stays %d)", ev.Clock)
		case ev.Clock != m.Clock:
			s += fmt.Sprintf(" (resent with its original stamp; clock stays %d)", ev.Clock)
		case ev.Clock > ev.Before+1:
			s += fmt.Sprintf(" (clock %d -> %d: the release before it ticked too)", ev.Before, ev.Clock)
		}
	default:
		s = fmt.Sprintf("received %s@%d from %s: clock %d -> %d", m.Kind, m.Clock, quoteID(m.From), ev.Before, ev.Clock)
		if ev.Clock == max(ev.Before, m.Clock)+1 {
			s += fmt.Sprintf(" (max(%d, %d) + 1)", ev.Before, m.Clock)
		}
	}
	if m.Kind == lamportmutex.Release && len(m.Payload) > 0 {
		s += " " + describeBatch(m.Payload, sameBatch)
	}
	return now.Format(traceTime) + " " + s
}

// describeBatch lists the blocks of a release's payload, at most
// traceBlocksShown of them.
func describeBatch(payload []byte, same bool) string {
	blocks, err := ledger.DecodeBatch(payload)
	if err != nil {
		return fmt.Sprintf("with a %d-byte payload that is not a batch of blocks: %v", len(payload), err)
	}
	n := len(blocks)
	noun := "blocks"
	if n == 1 {
		noun = "block"
	}
	if same {
		return fmt.Sprintf("with the same %d %s", n, noun)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "with %d %s:", n, noun)
	for i, b := range blocks[:min(n, traceBlocksShown)] {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, " #%d %s %s -> %s amount %d", b.Height, b.Hash.Short(),
			quoteID(b.Transfer.From), quoteID(b.Transfer.To), b.Transfer.Amount)
	}
	if n > traceBlocksShown {
		fmt.Fprintf(&sb, ", and %d more", n-traceBlocksShown)
	}
	return sb.String()
}
