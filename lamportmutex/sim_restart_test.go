package lamportmutex

import (
	"testing"
)

// TestRestartStaleReply replays the shortest way the simulation once found
// for a restarted peer to enter while another held the lock, before
// messages carried the receiver's incarnation. Peer 2 restarts with
// requests of its dead incarnation still on the wire. Peer 1 answers them
// after 2 has restarted, and the transport may (by its contract) deliver
// these answers, addressed to the dead incarnation, to the new one. Taken
// as "heard from 1", they let the new 2 stamp a request and then see a
// later message from 1, while 1's own request went to the dead incarnation
// and is resent only when 1 handles PeerUp(2). Now the new 2 ignores both
// answers (they name the dead incarnation) and waits for 1's HELLO and
// resent request: it must not enter while 1 holds.
func TestRestartStaleReply(t *testing.T) {
	c, err := newCluster(peerIDs(2), false, true)
	if err != nil {
		t.Fatal(err)
	}
	c.logf = t.Logf
	k := newChecker(2)
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := k.check(c); err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
	}
	const p1, p2 = 0, 1
	step("boot", boot(c))
	step("request 1", c.request(p1))           // 1->2 REQUEST@3
	step("deliver 1->2", c.deliver(p1, p2, 0)) // 2 queues (3,1), REPLY@5
	step("request 2", c.request(p2))           // 2->1 REQUEST@6
	step("withdraw 2", c.release(p2, nil))     // 2->1 RELEASE@7
	step("request 2 again", c.request(p2))     // 2->1 REQUEST@8
	step("restart 2", c.crash(p2, []int{9, 9}, []bool{true, true}))
	k.crashed(c, p2)
	step("deliver 1->2 PEERUP", c.deliver(p1, p2, 0))  // new 2 answers HELLO
	step("deliver 2->1 REPLY@5", c.deliver(p2, p1, 0)) // 1 enters with (3,1)
	if !c.ms[p1].Held() {
		t.Fatalf("1 should hold the lock: %s", machineString(c.ms[p1]))
	}
	step("deliver 2->1 REQUEST@6", c.deliver(p2, p1, 0)) // stale; 1 answers REPLY@8 to "2"
	step("deliver 1->2 REPLY@8", c.deliver(p1, p2, 0))   // meant for the dead 2: ignored
	step("request 2 (new incarnation)", c.request(p2))   // held back: no HELLO from 1 yet
	step("deliver 2->1 RELEASE@7", c.deliver(p2, p1, 0))
	step("deliver 2->1 REQUEST@8", c.deliver(p2, p1, 0)) // stale; 1 answers later than 2's stamp
	step("deliver 1->2", c.deliver(p1, p2, 0))           // meant for the dead 2: ignored
	if c.ms[p2].Held() || c.ms[p2].Synced() {
		t.Fatalf("the new 2 took stale answers into account: %s", machineString(c.ms[p2]))
	}
	// 1 learns of the new 2, greets it and resends its request; the new 2
	// then queues (3,1) ahead of its own.
	for len(c.links[p2][p1]) > 0 {
		step("deliver 2->1", c.deliver(p2, p1, 0))
	}
	for len(c.links[p1][p2]) > 0 {
		step("deliver 1->2", c.deliver(p1, p2, 0))
	}
	if h, _ := c.ms[p2].q.head(); h.ID != "1" || c.ms[p2].Held() {
		t.Fatalf("the new 2 should wait behind 1: %s", machineString(c.ms[p2]))
	}
}
