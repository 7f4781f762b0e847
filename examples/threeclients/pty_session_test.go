//go:build linux

package main

import (
	"fmt"
	"testing"
)

// The README's three-terminal session, as a student types it: three
// clients, each on its own terminal, in the course's syntax, with the
// clock on every line.
func TestPTYThreeTerminalSession(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three processes on ptys")
	}
	a := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", a[0], a[1], a[2])
	data := t.TempDir()
	term := map[string]*ptyProc{}
	for _, id := range []string{"1", "2", "3"} {
		term[id] = startPTY(t, "-peers", peers, "-data", data, id)
		term[id].expect(`^\[` + id + ` @0\] listening on `)
	}
	for _, id := range []string{"1", "2", "3"} {
		term[id].expect(`^\[` + id + ` @\d+\] all peers connected$`)
		term[id].expectLine(`^> $`)
	}
	term["1"].line("transfer 1 2 5")
	term["1"].expect(`^\[1 @\d+\] transfer 1 -> 2 amount 5: SUCCESS \(balance before 10, after 5; block #1 \w+\)$`)
	term["2"].expect(`^\[2 @\d+\] block #1 \w+ from client 1 inserted: 1 -> 2 amount 5 \(request clock 1\)$`)
	term["3"].expect(`^\[3 @\d+\] block #1 \w+ from client 1 inserted: 1 -> 2 amount 5 \(request clock 1\)$`)
	term["2"].line("2 transfer 3 7") // a leading own number is accepted
	term["2"].expect(`^\[2 @\d+\] transfer 2 -> 3 amount 7: SUCCESS \(balance before 15, after 8; block #2 \w+\)$`)
	term["3"].expect(`^\[3 @\d+\] block #2 \w+ from client 2 inserted: 2 -> 3 amount 7`)
	term["3"].line("transfer 3 1 20")
	term["3"].expect(`^\[3 @\d+\] transfer 3 -> 1 amount 20: FAILED: insufficient funds: client 3 has 17, needs 20`)
	term["1"].expect(`^\[1 @\d+\] block #2 `)
	term["1"].line("balance 2")
	term["1"].expect(`^\[1 @\d+\] balance of client 2: 8$`)
	term["2"].line("print balance table")
	term["2"].expect(`^\[2 @\d+\] balance table: 1=5 2=8 3=17$`)
	term["3"].line("print blockchain")
	term["3"].expect(`^\[3 @\d+\] blockchain, 2 blocks after genesis, newest first:$`)
	term["3"].line("transfer 2 3 1")
	term["3"].expect(`^\[3 @\d+\] error: client 3 cannot spend client 2's money$`)
	for _, id := range []string{"3", "2", "1"} {
		term[id].line("exit")
		term[id].checkExit()
	}
}

// The all-in-one session in the course's syntax on one terminal.
func TestPTYAllInOneCourseSession(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := allInOnePTY(t)
	p.line("transfer 1 2 5")
	p.expect(`^\[1 @\d+\] transfer 1 -> 2 amount 5: SUCCESS \(balance before 10, after 5; block #1 \w+, now on`) // the line wraps at 100 columns
	p.line("balance 2")
	for _, id := range []string{"1", "2", "3"} {
		p.expect(`^\[` + id + ` @\d+\] balance of client 2: 15$`)
	}
	p.line("transfer 2 1 3 &")
	p.line("transfer 3 1 3 &")
	p.line("sync")
	p.line("print balance table")
	for _, id := range []string{"1", "2", "3"} {
		p.expect(`^\[` + id + ` @\d+\] balance table: 1=11 2=12 3=7$`)
	}
	p.line("print blockchain")
	p.expect(`^\[1 @\d+\] blockchain \(the same on clients 1, 2 and 3\), 3 blocks after genesis, newest first:$`)
	p.line("2 exit")
	p.line("1 balance")
	p.expect(`^\[1 @\d+\] balance of client 1: 11$`)
	p.line("exit")
	p.checkExit()
}
