package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lamportledger/lamportledger/ledger"
)

// allInOnePeers returns -peers for three clients on free loopback ports.
func allInOnePeers(t *testing.T) string {
	addrs := freePorts(t, 3)
	return fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
}

// inOrder checks that out has lines matching res, in that order.
func inOrder(t *testing.T, out string, res ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := 0
	for _, re := range res {
		rx := regexp.MustCompile(re)
		for i < len(lines) && !rx.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("no line matching %q (in this order) in:\n%s", re, out)
		}
		i++
	}
}

// A client runs its own commands in the order given: the first transfer
// is the one that can pay, and a read after a transfer sees it. Both in a
// client's own queue ("1 transfer ...") and in the course's syntax.
func TestOwnCommandsRunInOrder(t *testing.T) {
	checkNoLeaks(t)
	for _, script := range []string{
		"1 transfer 2 6\n1 transfer 3 6\n1 balance\n1 print balance table\n",
		"transfer 1 2 6\ntransfer 1 3 6\nbalance 1\nprint balance table\n",
	} {
		code, out, errs := runHere(t, script, "-memory", "-peers", allInOnePeers(t))
		if code != 0 {
			t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
		inOrder(t, out,
			`^\[1 @\d+\] transfer 1 -> 2 amount 6: SUCCESS \(balance before 10, after 4; block #1 \w+, now on clients 2 and 3\)$`,
			`^\[1 @\d+\] transfer 1 -> 3 amount 6: FAILED: insufficient funds: client 1 has 4, needs 6`,
			`^\[1 @\d+\] balance of client 1: 4$`,
			`^\[1 @\d+\] balance table: 1=4 2=16 3=10$`,
		)
	}
}

// A line in the course's syntax waits for the lines before it, so a read
// is answered by every client after the transfer reached them; & lets
// transfers run at the same time, and sync waits for them.
func TestCourseSyntaxAllInOne(t *testing.T) {
	checkNoLeaks(t)
	script := "transfer 1 2 5\nbalance 2\nprint blockchain\n" +
		"transfer 1 3 1 &\ntransfer 2 3 1 &\ntransfer 3 1 1 &\nsync\nprint balance table\n" +
		"transfer 2 5\nfly\n"
	code, out, errs := runHere(t, script, "-memory", "-peers", allInOnePeers(t))
	if code != 0 {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	inOrder(t, out,
		`^all clients connected$`,
		`^\[1 @\d+\] transfer 1 -> 2 amount 5: SUCCESS`,
		`^\[1 @\d+\] balance of client 2: 15$`,
		`^\[2 @\d+\] balance of client 2: 15$`,
		`^\[3 @\d+\] balance of client 2: 15$`,
		`^\[1 @\d+\] blockchain \(the same on clients 1, 2 and 3\), 1 block after genesis`,
		`^\[\d @\d+\] balance table: 1=5 2=14 3=11$`,
		`^\[\d @\d+\] balance table: 1=5 2=14 3=11$`,
		`^\[\d @\d+\] balance table: 1=5 2=14 3=11$`,
		`^error: which client sends it\? Write transfer <from> <to> <amount>`,
		`^error: unknown command "fly"`,
	)
	if n := strings.Count(out, "amount 1: SUCCESS"); n != 3 {
		t.Errorf("%d of the 3 & transfers succeeded:\n%s", n, out)
	}
}

// "2 exit" stops client 2 alone, and the rest of the input is still read.
func TestOneClientExits(t *testing.T) {
	checkNoLeaks(t)
	code, out, errs := runHere(t, "2 exit\n1 balance\n3 balance\n", "-memory", "-peers", allInOnePeers(t))
	if code != 0 {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	inOrder(t, out, `^\[1 @\d+\] balance of client 1: 10$`) // two clients' queues: either order
	inOrder(t, out, `^\[3 @\d+\] balance of client 3: 10$`)
	code, out, errs = runHere(t, "2 exit\n2 balance\n", "-memory", "-peers", allInOnePeers(t))
	if code != 0 || !regexp.MustCompile(`(?m)^error: client 2 (has exited|is leaving once its commands have finished)`).MatchString(out) {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// A script in the course's syntax prints the same, byte for byte, on every
// run: the clocks, the transfer ids and so the block hashes too.
func TestScriptSameOnEveryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program 20 times")
	}
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	peers := allInOnePeers(t)
	certs := filepath.Join(t.TempDir(), "certs")
	if out, err := exec.Command(bin, "certs", "-dir", certs, "-peers", peers).CombinedOutput(); err != nil {
		t.Fatalf("certs: %v\n%s", err, out)
	}
	script := "transfer 1 2 5\ntransfer 2 3 7\nbalance 2\ntransfer 3 1 20\nprint balance table\n" +
		"transfer 3 1 3\nprint blockchain\n"
	var first string
	for run := range 20 {
		cmd := exec.Command(bin, "-memory", "-tls", certs, "-peers", peers)
		cmd.Stdin = strings.NewReader(script)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("run %d: %v\nstdout:\n%s\nstderr:\n%s", run, err, out, stderr.String())
		}
		if run == 0 {
			first = string(out)
			inOrder(t, first, `amount 5: SUCCESS`, `amount 7: SUCCESS`, `amount 20: FAILED`, `amount 3: SUCCESS`,
				`blockchain \(the same on clients 1, 2 and 3\), 3 blocks after genesis`)
			continue
		}
		if string(out) != first {
			t.Fatalf("run %d printed otherwise than run 0 (%s):\n%s", run, firstDiff(first, string(out)), out)
		}
	}
}

// Transfer ids are (client, number), numbered on from the client's chain,
// and other clients' ids do not count.
func TestTransferIDsContinueFromChain(t *testing.T) {
	a := newTransferIDs("1")
	b := newTransferIDs("2")
	var chain []ledger.Block
	for range 3 {
		chain = append(chain, ledger.Block{Transfer: ledger.Transfer{ID: a.take()}})
	}
	for range 5 {
		chain = append(chain, ledger.Block{Transfer: ledger.Transfer{ID: b.take()}})
	}
	chain = append(chain, ledger.Block{Transfer: ledger.Transfer{ID: ledger.NewTransferID()}})
	again, before := newTransferIDs("1"), newTransferIDs("1")
	if err := again.skipPast(blockSeq(chain)); err != nil {
		t.Fatal(err)
	}
	if err := before.skipPast(blockSeq(chain[:3])); err != nil {
		t.Fatal(err)
	}
	if got, want := again.take(), before.take(); got != want {
		t.Fatalf("after a restart: %s, want %s", got, want)
	}
	if n, ok := again.number(again.take()); !ok || n != 5 {
		t.Fatalf("number %d, %v; want 5", n, ok)
	}
	if _, ok := again.number(chain[3].Transfer.ID); ok {
		t.Fatal("client 2's id counted as client 1's")
	}
	if a.take() == b.take() {
		t.Fatal("two clients made the same id")
	}
	broken := errors.New("store broken")
	if err := again.skipPast(func(yield func(ledger.Block, error) bool) { yield(ledger.Block{}, broken) }); !errors.Is(err, broken) {
		t.Fatalf("skipPast of a failing read: %v, want %v", err, broken)
	}
}

// A starting client looks for its numbers in the newest blocks only: the
// ID windows of every member, or the whole chain when it is shorter.
func TestRecentFromCoversEveryWindow(t *testing.T) {
	for _, c := range []struct{ head, want uint64 }{
		{0, 0}, {3 * ledger.IDWindow, 0}, {3*ledger.IDWindow + 1, 1}, {1_000_000, 1_000_000 - 3*ledger.IDWindow},
	} {
		if got := recentFrom(c.head, 3); got != c.want {
			t.Errorf("recentFrom(%d, 3) = %d, want %d", c.head, got, c.want)
		}
	}
}

// blockSeq yields blocks, in order.
func blockSeq(blocks []ledger.Block) iter.Seq2[ledger.Block, error] {
	return func(yield func(ledger.Block, error) bool) {
		for _, b := range blocks {
			if !yield(b, nil) {
				return
			}
		}
	}
}

// A bad line's error comes in its place among the output of the lines
// before it, not ahead of them.
func TestErrorsInOrder(t *testing.T) {
	checkNoLeaks(t)
	code, out, errs := runHere(t, "1 transfer 2 5\n1 transfer 2 -5\ntransfer 1 3 4\nbalance 9\n4 balance\n", "-memory", "-peers", allInOnePeers(t))
	if code != 0 {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	inOrder(t, out,
		`^\[1 @\d+\] transfer 1 -> 2 amount 5: SUCCESS`,
		`^\[1 @\d+\] error: amount must be positive, got -5$`,
		`^\[1 @\d+\] transfer 1 -> 3 amount 4: SUCCESS`,
		`^error: unknown client "9"`,
		`^error: unknown client "4"`,
	)
}

// exit while a line waits behind a transfer that cannot finish (a client
// has left) is still read; given again, it abandons what is left.
func TestExitAgainWhileStuck(t *testing.T) {
	checkNoLeaks(t)
	in, w := io.Pipe()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"-memory", "-peers", allInOnePeers(t)}, in, &out, &errb)
	}()
	for _, l := range []string{"2 exit", "transfer 1 2 5", "balance 1", "exit"} {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(out.String(), "exit: waiting for 1 command to finish; type exit again") {
		if time.Now().After(deadline) {
			t.Fatalf("no exit report:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(w, "exit\n"); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("status %d", code)
	}
	w.Close()
	inOrder(t, out.String(), `^\[1 @\d+\] transfer 1 -> 2 amount 5: FAILED: abandoned`)
	if strings.Contains(out.String(), "balance of client 1") {
		t.Fatalf("a read after an abandoned transfer ran:\n%s", out.String())
	}
}
