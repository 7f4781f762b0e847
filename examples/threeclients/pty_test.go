//go:build linux

package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
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
	p.expect(`^\[1 @\d+\] balance of client 2: 10$`)
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
	p.expect(`^\[3 @\d+\] balance of client 1: 10$`)

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
	p.expect(`^\[2 @\d+\] balance of client 2: 10$`)
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
	block := regexp.MustCompile(`^\[1 @\d+\] block #1 \S+ from client 2 inserted: 2 -> 1 amount 4`)
	p1.expectScreen("the block line right above the half-typed line", func(rows []string, y, x int) bool {
		return y > 0 && block.MatchString(rows[y-1]) && rows[y] == "> bala" && x == len("> bala")
	})
	p1.line("nce")
	p1.expect(`^\[1 @\d+\] balance of client 1: 14$`)

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
	p.expect(`^\[1 @\d+\] balance of client 1: 10$`)
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
		return rows[0] == "> 2 balance 3" && regexp.MustCompile(`^\[2 @\d+\] balance of client 3: 10$`).MatchString(rows[1]) && y == 2
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
	p.expect(`^\[1 @\d+\] balance of client 1: 10$`)
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

// editorOnPTY opens the editor in this process on a new pty, with
// interrupt as its Ctrl-C, and returns it with the pty's screen and the
// terminal's settings before. The test's cleanup closes the editor and
// the pty.
func editorOnPTY(t *testing.T, interrupt func()) (*lineEditor, *ptyScreen, *unix.Termios) {
	t.Helper()
	master, tty, err := openPTY(ptyRows, ptyCols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() }) // after the screen's and the editor's
	scr := newPTYScreen(t, master)
	before, err := termios(tty)
	if err != nil {
		t.Fatal(err)
	}
	e, err := openTerminal(tty, tty, interrupt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	scr.expectLine(`^> $`)
	return e, scr, before
}

// nextLine is the editor's next line, or a failure after hangGuard.
func nextLine(t *testing.T, e *lineEditor) inputLine {
	t.Helper()
	select {
	case in, ok := <-e.Lines():
		if !ok {
			t.Fatal("Lines closed")
		}
		return in
	case <-time.After(hangGuard):
		t.Fatalf("no line after %v", hangGuard)
		return inputLine{}
	}
}

// A configuration error on a terminal is printed, and the program exits
// 1 with the terminal as it was and no prompt left.
func TestPTYConfigError(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program on a pty")
	}
	p := startPTY(t, "-memory", "-delay", "-1s")
	p.expect(`^threeclients: .*delay`)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, p.dump())
	}
	p.mu.Lock()
	before, after := p.ttyStart, p.ttyAfter
	p.mu.Unlock()
	if after == nil || *after != *before {
		t.Fatalf("terminal settings not restored: before %+v, after %+v", before, after)
	}
	p.expectScreen("no prompt left", func(rows []string, y, x int) bool {
		return rows[y] == "" && x == 0
	})
}

// In this process: the editor takes Ctrl-C out of the input, and Close
// stops its goroutines, restores the terminal, and erases the prompt and
// the half-typed line.
func TestLineEditorClose(t *testing.T) {
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) }) // runs after every other cleanup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, scr, before := editorOnPTY(t, cancel)
	tty := e.input.f

	scr.write("one" + ctrlC + " two" + keyEnter)
	if in := nextLine(t, e); in.err != nil || in.text != "one two" {
		t.Fatalf("got %+v, want \"one two\"", in)
	}
	<-ctx.Done() // Ctrl-C called interrupt
	scr.write("half")
	scr.expectLine(`^> half$`)
	e.Close()
	e.Close()
	if _, ok := <-e.Lines(); ok {
		t.Fatal("Lines still open after Close")
	}
	scr.expectScreen("the prompt and the line erased", func(rows []string, y, x int) bool {
		return rows[y] == "" && x == 0
	})
	after, err := termios(tty)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Fatalf("terminal settings not restored: before %+v, after %+v", before, after)
	}
	// Close took the editor's read deadline away again.
	if err := tty.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	scr.expect(`^after$`)
}

// SetPrompt, from another goroutine, draws the new prompt before the
// half-typed line at once; output still goes above both.
func TestLineEditorSetPrompt(t *testing.T) {
	e, scr, _ := editorOnPTY(t, func() {})
	scr.write("1 bal")
	scr.expectLine(`^> 1 bal$`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.SetPrompt("[1 @7] \x1b[2J> ") // the escape is dropped, not run
	}()
	<-done
	scr.expectLine(`^\[1 @7\] \[2J> 1 bal$`)
	if _, err := e.Write([]byte("news")); err != nil { // no newline: one is added
		t.Fatal(err)
	}
	scr.expectScreen("the output above the prompt and the line", func(rows []string, y, x int) bool {
		return y > 0 && rows[y-1] == "news" && rows[y] == "[1 @7] [2J> 1 bal" && x == len(rows[y])
	})
	scr.write("ance" + keyEnter)
	if in := nextLine(t, e); in.text != "1 balance" {
		t.Fatalf("got %+v", in)
	}
}

// A line as long as the editor takes may have been cut, so it is refused
// whole; a shorter one is read; neither goes into the history.
func TestLineEditorLongLine(t *testing.T) {
	e, scr, _ := editorOnPTY(t, func() {})
	scr.write(strings.Repeat("a", editorLineRunes+10) + keyEnter)
	if in := nextLine(t, e); in.err == nil || !strings.Contains(in.err.Error(), "longer than 4095 characters") {
		t.Fatalf("got text of %d bytes, err %v", len(in.text), in.err)
	}
	scr.write(strings.Repeat("b", editorLineRunes) + keyEnter)
	if in := nextLine(t, e); in.err != nil || len(in.text) != editorLineRunes {
		t.Fatalf("got text of %d bytes, err %v", len(in.text), in.err)
	}
	scr.write(keyUp + keyEnter)
	if in := nextLine(t, e); in.err != nil || len(in.text) != editorLineRunes {
		t.Fatalf("after Up: text of %d bytes, err %v", len(in.text), in.err)
	}
}
