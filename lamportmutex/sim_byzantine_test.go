package lamportmutex

import "math/rand/v2"

// injectByzantine returns a move in which the faulty member sends one
// arbitrary message to an honest member: any kind, valid or not (but not
// PeerUp or PeerDown, which only a transport makes), clocks from 0 to
// 2^64-1 with the edges around MaxClock, the right or a forged incarnation,
// payloads where none belongs, releases without requests, and now and then
// another member's id as the recipient.
func injectByzantine(c *cluster, rng *rand.Rand) move {
	b := c.faulty
	q := rng.IntN(len(c.ids) - 1)
	if q >= b {
		q++
	}
	kinds := []Kind{Request, Reply, Release, Hello, Data, 0, PeerDown + 1, 255}
	msg := Message{Kind: kinds[rng.IntN(len(kinds))], From: c.ids[b], To: c.ids[q]}
	switch r := rng.IntN(400); {
	case r < 80:
		msg.Clock = 0
	case r < 200:
		msg.Clock = uint64(rng.IntN(30))
	case r < 280:
		msg.Clock = c.ms[q].clock + uint64(rng.IntN(3))
	case r < 285: // accepted: a jump far beyond honest progress
		msg.Clock = c.ms[q].clock + MaxClockStep>>12
	case r < 290: // refused: past the most one message may move a clock,
		// even after q's clock has moved on by the time it arrives
		msg.Clock = c.ms[q].clock + 2*MaxClockStep + uint64(rng.IntN(2))
	case r < 300: // refused unless a clock is already near the top
		msg.Clock = MaxClock - 50 - uint64(rng.IntN(52))
	case r < 340:
		msg.Clock = MaxClock + 1
	default:
		msg.Clock = 1<<64 - 1
	}
	switch r := rng.IntN(10); {
	case r < 7:
		msg.Incarnation = uint64(c.inc[q])
	case r < 8:
		msg.Incarnation = uint64(c.inc[q]) + 1
	case r < 9:
		msg.Incarnation = 1<<64 - 1
	}
	if rng.IntN(3) == 0 {
		msg.Payload = []byte("forged")
	}
	if rng.IntN(20) == 0 {
		msg.To = c.ids[rng.IntN(len(c.ids))]
	}
	return move{kind: mvInject, from: b, to: q, msg: msg}
}
