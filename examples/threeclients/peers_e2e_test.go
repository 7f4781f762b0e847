//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
)

// A peer killed and restarted twice is reported down and back each time on
// the other clients' stdout. The first time, client 1 has a transfer
// waiting for the victim's REPLY (the victim was stopped first, so the
// REQUEST is in flight for sure) and says that the transfer needs it; the
// second time the victim comes back without its ledger file and says how
// many blocks it fetched from its peers.
func TestThreeClientsReportPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	data := t.TempDir()
	procs := map[string]*proc{
		"1": startProc(t, "1", peers, data, "-trace"),
		"2": startProc(t, "2", peers, data),
		"3": startProc(t, "3", peers, data),
	}
	for _, id := range []string{"1", "2", "3"} {
		procs[id].expect(`all peers connected`)
	}
	committed := 0
	for round := 1; round <= 2; round++ {
		victim := procs["3"]
		waiting := round == 1
		if waiting {
			if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			procs["1"].send("transfer 2 1")
			procs["1"].expect(`sent REQUEST@\d+ to 3$`)
		} else {
			procs["1"].send("transfer 2 1")
			procs["1"].expect(`transfer 1 -> 2 amount 1: SUCCESS`)
			committed++
			victim.waitChain(committed)
		}
		if err := victim.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = victim.cmd.Wait()
		if waiting {
			procs["1"].expect(`^\[1 @\d+\] client 3 is down \(waiting transfers need it\)$`)
		} else {
			procs["1"].expect(`^\[1 @\d+\] client 3 (is|was) down$`)
		}
		procs["2"].expect(`^\[2 @\d+\] client 3 (is|was) down$`)
		lost := round == 2
		if lost {
			if err := os.Remove(filepath.Join(data, "client-3.log")); err != nil {
				t.Fatal(err)
			}
		}
		procs["3"] = startProc(t, "3", peers, data)
		back := `client 3 is back \(restarted\)$`
		if waiting { // the transfer and the report come in either order
			procs["1"].expectAll(back, `transfer 1 -> 2 amount 1: SUCCESS`)
			committed++
		} else {
			procs["1"].expect(back)
		}
		procs["2"].expect(back)
		procs["3"].expect(`all peers connected`)
		if lost {
			m := procs["3"].expect(`^\[3 @\d+\] caught up (\d+) blocks? from peers$`)
			if n, _ := strconv.Atoi(m[1]); n != committed {
				t.Errorf("client 3 caught up %d blocks, want %d: %q", n, committed, m[0])
			}
		}
	}
	procs["2"].send("transfer 3 2")
	procs["2"].expect(`transfer 2 -> 3 amount 2: SUCCESS`)
	for _, id := range []string{"1", "2", "3"} {
		procs[id].waitChain(committed + 1)
	}
	for _, id := range []string{"1", "2", "3"} {
		procs[id].exit()
	}
}

// With -trace, a transfer between two processes shows the receive rule at
// work: the REQUEST moves the receiver's clock from before to
// max(before, request)+1, and the REPLY it triggers is a line of its own,
// sent at a later clock; the requester's clock then passes the REPLY's.
func TestThreeClientsTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two processes")
	}
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s", addrs[0], addrs[1])
	data := t.TempDir()
	p1 := startProc(t, "1", peers, data, "-trace")
	p2 := startProc(t, "2", peers, data, "-trace")
	p1.expect(`all peers connected`)
	p2.expect(`all peers connected`)
	p1.send("transfer 2 3")

	num := func(s string) uint64 {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const clockRx = `^\[%s @(\d+)\] \d\d:\d\d:\d\d\.\d\d\d `
	sent := p1.expect(fmt.Sprintf(clockRx, "1") + `sent REQUEST@(\d+) to 2$`)
	req := num(sent[2])
	if num(sent[1]) != req {
		t.Errorf("client 1's clock %s after sending REQUEST@%d: %q", sent[1], req, sent[0])
	}
	m := p2.expect(fmt.Sprintf(clockRx, "2") + `received REQUEST@(\d+) from 1: clock (\d+) -> (\d+) `)
	at, got, before, after := num(m[1]), num(m[2]), num(m[3]), num(m[4])
	if got != req || after != max(before, req)+1 || at != after {
		t.Errorf("receive rule: %q, want REQUEST@%d and clock before -> max(before, %d)+1 on a line stamped with it", m[0], req, req)
	}
	r := p2.expect(fmt.Sprintf(clockRx, "2") + `(.*)$`) // the very next line
	reply := regexp.MustCompile(`^sent REPLY@(\d+) to 1$`).FindStringSubmatch(r[2])
	if reply == nil {
		t.Fatalf("after %q, the next line is %q, want the REPLY it triggered", m[0], r[0])
	}
	if rc := num(reply[1]); rc <= after || num(r[1]) != rc {
		t.Errorf("after %q, the REPLY line %q: want it sent later than %d, stamped with its clock", m[0], r[0], after)
	}
	back := p1.expect(fmt.Sprintf(clockRx, "1") + `received REPLY@(\d+) from 2: clock (\d+) -> (\d+) `)
	if rc, b, a := num(back[2]), num(back[3]), num(back[4]); rc != num(reply[1]) || a != max(b, rc)+1 {
		t.Errorf("client 1: %q, want REPLY@%s and clock before -> max(before, %d)+1", back[0], reply[1], rc)
	}
	p1.expect(`transfer 1 -> 2 amount 3: SUCCESS`)
	p2.expect(fmt.Sprintf(clockRx, "2") + `received RELEASE@\d+ from 1: clock \d+ -> \d+ \(max\(\d+, \d+\) \+ 1\) with 1 block: #1 [0-9a-f]{8} 1 -> 2 amount 3$`)
	p1.exit()
	p2.exit()
}

// expectAll reads lines until each of res has matched one, in any order.
func (p *proc) expectAll(res ...string) {
	p.t.Helper()
	left := map[*regexp.Regexp]bool{}
	for _, re := range res {
		left[regexp.MustCompile(re)] = true
	}
	for len(left) > 0 {
		line := p.expect(`.*`)[0]
		for rx := range left {
			if rx.MatchString(line) {
				delete(left, rx)
				break
			}
		}
	}
}
