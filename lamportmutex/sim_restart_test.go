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
	c, err := newCluster(peerIDs(2), true)
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
	if q := c.ms[p2].Queue(); len(q) == 0 || q[0].ID != "1" || c.ms[p2].Held() {
		t.Fatalf("the new 2 should wait behind 1: %s", machineString(c.ms[p2]))
	}
}

// TestGrantOrderAcrossOverlappingRestarts: Token's doc promises that
// tokens of successive grants strictly increase (a fencing token). Across
// overlapping restarts they do not, although a live Machine remembers the
// greatest grant all along: 1 is granted (29,1); 2 and 3 restart and greet
// each other with low clocks; 1 greets the new 3 (whose clock so passes
// the grant) and then crashes before greeting the new 2. The new 2 is
// then synced by two low HELLOs and is granted a smaller token, while the
// new 3 still remembers a clock above the earlier grant. (Found by the
// strict grant order walk, TestGrantOrderWhileRemembered.) A restarted peer
// that starts from the clock it kept is granted a later token.
func TestGrantOrderAcrossOverlappingRestarts(t *testing.T) {
	c, err := newCluster(peerIDs(3), true)
	if err != nil {
		t.Fatal(err)
	}
	c.logf = t.Logf
	do := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	drain := func(from, to int) {
		t.Helper()
		for len(c.links[from][to]) > 0 {
			do("deliver", c.deliver(from, to, 0))
		}
	}
	all := func(p int) []int { return []int{p, p, p} }
	const p1, p2, p3 = 0, 1, 2
	do("boot", boot(c))
	var first Token
	for range 5 { // a few entries, so that clocks are well past a fresh start
		do("request 1", c.request(p1))
		do("settle", boot(c))
		first, _ = c.ms[p1].Own()
		if !c.ms[p1].Held() {
			t.Fatalf("1 should hold: %s", machineString(c.ms[p1]))
		}
		do("release 1", c.release(p1, []byte("x")))
		do("settle", boot(c))
	}
	// Each restarted peer starts from the clock it kept, as Config.StartClock
	// does with the clock of the ledger's last block. Without that, the new
	// 2 below is granted (6,2) after (29,1): the order across overlapping
	// restarts is owed only to a peer that keeps its clock (see the package
	// doc).
	do("restart 2", c.crash(p2, all(99), []bool{true, true, true}))
	c.ms[p2].AdvanceClock(first.Clock)
	do("restart 3", c.crash(p3, all(99), []bool{true, true, true}))
	c.ms[p3].AdvanceClock(first.Clock)
	do("request 2", c.request(p2)) // held back: not synced
	// The new 2 and the new 3 greet each other with low clocks.
	drain(p2, p3)
	drain(p3, p2)
	drain(p2, p3)
	// 1 greets the new 3 (HELLO with 1's clock), which learns the clock.
	drain(p3, p1)
	drain(p1, p3)
	if c.ms[p3].Clock() <= first.Clock {
		t.Fatalf("3 should remember a clock above %v: %s", first, machineString(c.ms[p3]))
	}
	// 1 crashes before handling PEERUP from the new 2.
	do("restart 1", c.crash(p1, all(0), []bool{true, true, true}))
	c.ms[p1].AdvanceClock(first.Clock)
	do("settle", boot(c))
	for c.holder() < 0 && c.busy() {
		do("settle", boot(c))
	}
	if h := c.holder(); h != p2 {
		t.Fatalf("expected 2 to hold; holder %d", h)
	}
	tok, _ := c.ms[p2].Own()
	if !first.Less(tok) {
		t.Errorf("grant order: 2 is granted %v after %v was granted, while 3 (never down since) remembers clock %d: %s",
			tok, first, c.ms[p3].Clock(), machineString(c.ms[p3]))
	}
}
