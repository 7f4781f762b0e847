package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// exit with a transfer waiting for a peer that is not there says what it
// waits for and how to abandon it; exit again abandons it, and the
// program ends with status 0.
func TestExitWithTransferWaiting(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	p := startProc(t, "1", peers, t.TempDir(), "-memory")
	p.send("transfer 2 1")
	p.send("exit")
	p.expect(`^\[1 @\d+\] exit: waiting for 1 command to finish; type exit again, or press Ctrl-C, to abandon it$`)
	p.send("balance")
	p.expect(`^\[1 @\d+\] error: leaving once the commands given have finished`)
	p.send("exit")
	p.expect(`^\[1 @\d+\] transfer 1 -> 2 amount 1: FAILED: abandoned \(balance before 10, after 10\)$`)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit status: %v\nstderr:\n%s", err, p.stderr)
	}
}

// A client's transfer numbers go on after a SIGKILL and a restart, so no
// new transfer is taken for a retry of an old one: with the ledger in a
// file, and with -memory, where the restarted client has lost its chain
// and the ledger finds its first number taken.
func TestTransferNumbersAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program")
	}
	for _, store := range []string{"file", "memory"} {
		t.Run(store, func(t *testing.T) {
			var extra []string
			if store == "memory" {
				extra = []string{"-memory"}
			}
			addrs := freePorts(t, 3)
			peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
			data := t.TempDir()
			procs := map[string]*proc{}
			for _, id := range []string{"1", "2", "3"} {
				procs[id] = startProc(t, id, peers, data, extra...)
			}
			for _, p := range procs {
				p.expect(`all peers connected`)
			}
			one := procs["1"]
			for range 2 {
				one.send("transfer 2 1")
				one.expect(`amount 1: SUCCESS`)
			}
			procs["2"].waitChain(2) // with -memory, a block that never left dies with its maker
			if err := one.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = one.cmd.Wait()
			procs["2"].expect(`client 1 is down`)
			one = startProc(t, "1", peers, data, extra...)
			one.send("transfer 2 1")
			one.expect(`transfer 1 -> 2 amount 1: SUCCESS \(balance before 8, after 7; block #3 `)
			chain := procs["2"].waitChain(3)
			if strings.Count(chain, "1 -> 2 amount 1") != 3 {
				t.Fatalf("client 2's chain:\n%s", chain)
			}
			procs["2"].send("table")
			if m := procs["2"].expect(`balance table: (.*)$`); m[1] != "1=7 2=13 3=10" {
				t.Fatalf("client 2's table after the restart: %s", m[1])
			}
		})
	}
}
