//go:build linux

package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// allInOnePTY starts the three clients in one process on a pty, in
// memory on free ports, and waits for the prompt.
func allInOnePTY(t *testing.T) *ptyProc {
	t.Helper()
	a := freePorts(t, 3)
	p := startPTY(t, "-memory", "-peers", fmt.Sprintf("1=%s,2=%s,3=%s", a[0], a[1], a[2]))
	p.expectLine(`^> $`)
	return p
}

// exitWithCtrlD ends the input on an empty line and checks that the
// program exits 0 and leaves the terminal's settings as it found them.
func (p *ptyProc) exitWithCtrlD() {
	p.t.Helper()
	p.write(ctrlD)
	p.checkExit()
}

func (p *ptyProc) checkExit() {
	p.t.Helper()
	if code := p.wait(); code != 0 {
		p.t.Fatalf("exit status %d\n%s", code, p.dump())
	}
	p.mu.Lock()
	before, after := p.ttyStart, p.ttyAfter
	p.mu.Unlock()
	if after == nil {
		p.t.Fatal("no terminal settings read after the exit")
	}
	if before.Iflag != after.Iflag || before.Oflag != after.Oflag || before.Lflag != after.Lflag || before.Cflag != after.Cflag {
		p.t.Fatalf("terminal settings not restored: before %+v, after %+v", before, after)
	}
	if after.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG) != unix.ICANON|unix.ECHO|unix.ISIG {
		p.t.Fatalf("terminal left without ICANON, ECHO or ISIG: lflag %#x", after.Lflag)
	}
}

// History (Up, Down), Left, Right, Home, End and Backspace edit a line
// that then runs as edited.
func TestPTYHistoryAndEditing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := allInOnePTY(t)
	p.line("1 balance 2")
	p.expect(`^\[1\] balance of client 2: 10$`)
	p.line("") // an empty line is not kept in the history

	p.write(keyUp)
	p.expectLine(`^> 1 balance 2$`)
	p.write(keyHome + keyRight + keyBackspace + "3")
	p.expectLine(`^> 3 balance 2$`)
	p.write(keyEnd + keyBackspace + "1")
	p.expectLine(`^> 3 balance 1$`)
	p.write(keyLeft + keyLeft + keyLeft + keyLeft + keyLeft + keyLeft + keyLeft + keyLeft + keyLeft + "x")
	p.expectLine(`^> 3 xbalance 1$`)
	p.write(keyBackspace)
	p.expectLine(`^> 3 balance 1$`)
	p.write(keyEnter)
	p.expect(`^\[3\] balance of client 1: 10$`)

	// Up and Down walk the history and come back to the line being typed.
	p.write("2 ba")
	p.expectLine(`^> 2 ba$`)
	p.write(keyUp)
	p.expectLine(`^> 3 balance 1$`)
	p.write(keyUp)
	p.expectLine(`^> 1 balance 2$`)
	p.write(keyDown)
	p.expectLine(`^> 3 balance 1$`)
	p.write(keyDown)
	p.expectLine(`^> 2 ba$`)
	p.line("lance")
	p.expect(`^\[2\] balance of client 2: 10$`)
	p.exitWithCtrlD()
}

// A line printed while a line is half typed appears above the prompt; the
// half-typed line is drawn again below it, and completes as typed.
func TestPTYAsyncOutputAbovePrompt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three processes, one on a pty")
	}
	a := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", a[0], a[1], a[2])
	data := t.TempDir()
	p1 := startPTY(t, "-peers", peers, "-data", data, "1")
	p2 := startProc(t, "2", peers, data)
	p3 := startProc(t, "3", peers, data)
	for _, p := range []*proc{p2, p3} {
		p.expect(`all peers connected`)
	}
	p1.expect(`all peers connected`)

	p1.write("bala")
	p1.expectLine(`^> bala$`)
	p2.send("transfer 1 4")
	p2.expect(`transfer 2 -> 1 amount 4: SUCCESS`)
	block := regexp.MustCompile(`^\[1\] block #1 \S+ from client 2 inserted: 2 -> 1 amount 4`)
	p1.expectScreen("the block line right above the half-typed line", func(rows []string, y, x int) bool {
		return y > 0 && block.MatchString(rows[y-1]) && rows[y] == "> bala" && x == len("> bala")
	})
	p1.line("nce")
	p1.expect(`^\[1\] balance of client 1: 14$`)

	p1.exitWithCtrlD()
	p2.exit()
	p3.exit()
}

// Ctrl-L clears the screen and draws the prompt and the half-typed line
// at the top; the line then runs as typed.
func TestPTYClearScreen(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := allInOnePTY(t)
	p.line("1 balance")
	p.expect(`^\[1\] balance of client 1: 10$`)
	p.write("2 bal")
	p.expectLine(`^> 2 bal$`)
	p.write(ctrlL)
	onlyPrompt := func(rows []string, y, x int) bool {
		for _, r := range rows[1:] {
			if r != "" {
				return false
			}
		}
		return rows[0] == "> 2 bal" && y == 0 && x == len("> 2 bal")
	}
	p.expectScreen("a clear screen with the prompt and the line at the top", onlyPrompt)
	p.line("ance 3")
	p.expectScreen("the answer right below", func(rows []string, y, x int) bool {
		return rows[0] == "> 2 balance 3" && rows[1] == "[2] balance of client 3: 10" && y == 2
	})
	p.exitWithCtrlD()
}

// Ctrl-D ends the input only on an empty line; elsewhere it deletes the
// rune under the cursor. On an empty line the program exits 0 and leaves
// the terminal as it found it, with the prompt erased.
func TestPTYCtrlD(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := allInOnePTY(t)
	p.write("1 balancex" + keyLeft + ctrlD)
	p.expectLine(`^> 1 balance$`)
	p.line("")
	p.expect(`^\[1\] balance of client 1: 10$`)
	p.exitWithCtrlD()
	p.expectScreen("no prompt left", func(rows []string, y, x int) bool {
		return rows[y] == "" && x == 0
	})
}

// Ctrl-C with a half-typed line ends the program as SIGINT does: exit 0,
// the terminal as it was.
func TestPTYCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := allInOnePTY(t)
	p.write("1 bal")
	p.expectLine(`^> 1 bal$`)
	p.write(ctrlC)
	p.checkExit()
	p.expectScreen("no prompt left", func(rows []string, y, x int) bool {
		return rows[y] == "" && x == 0
	})
}

// In this process: the editor reads lines from a pty, takes Ctrl-C out of
// the input, and Close stops its goroutines and restores the terminal.
func TestLineEditorClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	master, tty, err := openPTY(ptyRows, ptyCols)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer tty.Close()
	before, err := termios(tty)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := openTerminal(tty, tty, cancel)
	if err != nil {
		t.Fatal(err)
	}
	// Drain what the editor draws, so that its writes never wait.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		buf := make([]byte, 4096)
		for {
			if _, err := master.Read(buf); err != nil {
				return
			}
		}
	}()
	if _, err := master.Write([]byte("one" + ctrlC + " two\r")); err != nil {
		t.Fatal(err)
	}
	if in := <-e.Lines(); in.err != nil || in.text != "one two" {
		t.Fatalf("got %+v, want \"one two\"", in)
	}
	<-ctx.Done() // Ctrl-C called interrupt
	e.Close()
	e.Close()
	if _, ok := <-e.Lines(); ok {
		t.Fatal("Lines still open after Close")
	}
	after, err := termios(tty)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Fatalf("terminal settings not restored: before %+v, after %+v", before, after)
	}
	// The editor's reads had a deadline; Close took it away again.
	if err := tty.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	master.Close()
	<-drained
}
