//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// The window every pty test runs in.
const (
	ptyRows = 24
	ptyCols = 100
)

// Keys as a terminal sends them.
const (
	keyUp        = "\x1b[A"
	keyDown      = "\x1b[B"
	keyRight     = "\x1b[C"
	keyLeft      = "\x1b[D"
	keyHome      = "\x1b[H"
	keyEnd       = "\x1b[F"
	keyBackspace = "\x7f"
	keyEnter     = "\r"
	ctrlC        = "\x03"
	ctrlD        = "\x04"
	ctrlL        = "\x0c"
)

// ptyProc is the program running on a pseudo-terminal, as a person at a
// terminal runs it: write types keys, and the ptyScreen's methods read
// what it prints (see ptyScreen).
type ptyProc struct {
	*ptyScreen
	cmd *exec.Cmd
	tty *os.File // the parent's copy of the terminal; closed when the program exits

	exited   chan struct{} // closed when the program has exited
	waitErr  error         // guarded by mu
	ttyAfter *unix.Termios // the terminal's settings just after the program exited; guarded by mu
	ttyStart *unix.Termios // and before it started
}

// ptyScreen is the other end of a pseudo-terminal: what is written on the
// terminal goes through a screen (see screen), so that tests assert on the
// text a person would see, not on escape sequences.
//
// expect reads printed lines in order; expectLine and expectScreen look
// at the screen as it is. Every wait ends at hangGuard with the screen in
// the failure message; no wait is a pass criterion.
type ptyScreen struct {
	t      *testing.T
	master *os.File

	mu      sync.Mutex
	scr     *screen
	changed chan struct{} // closed and replaced at each change of scr or eof
	eof     bool          // the output has ended: no one has the terminal open, and all was read
	mark    int           // expect looks at rows from here on

	readDone chan struct{}
}

// newPTYScreen reads master into a screen of ptyRows x ptyCols until the
// output ends (EIO once no one has the terminal open) or master is
// closed; the test's cleanup closes master and waits for the reader.
func newPTYScreen(t *testing.T, master *os.File) *ptyScreen {
	p := &ptyScreen{t: t, master: master, scr: newScreen(ptyRows, ptyCols),
		changed: make(chan struct{}), readDone: make(chan struct{})}
	go p.read()
	t.Cleanup(func() {
		p.master.Close()
		<-p.readDone
	})
	return p
}

// startPTY starts the program with args on a new pseudo-terminal of
// ptyRows x ptyCols, as its controlling terminal and its stdin, stdout
// and stderr. The test's cleanup kills it if it still runs.
func startPTY(t *testing.T, args ...string) *ptyProc {
	t.Helper()
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	master, tty, err := openPTY(ptyRows, ptyCols)
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	p := &ptyProc{tty: tty, exited: make(chan struct{})}
	if p.ttyStart, err = termios(tty); err != nil {
		master.Close()
		tty.Close()
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := p.cmd.Start(); err != nil {
		master.Close()
		tty.Close()
		t.Fatal(err)
	}
	p.ptyScreen = newPTYScreen(t, master)
	go func() {
		err := p.cmd.Wait()
		after, terr := termios(p.tty)
		p.mu.Lock()
		p.waitErr = err
		if terr == nil {
			p.ttyAfter = after
		}
		p.mu.Unlock()
		// The master reads the end of the output once no one has the
		// terminal open any more.
		p.tty.Close()
		close(p.exited)
	}()
	t.Cleanup(func() { // before the screen's: master closes after the output's end is read
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		<-p.readDone
	})
	return p
}

// openPTY opens a new pseudo-terminal pair with the given window size.
func openPTY(rows, cols uint16) (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd, err := fdOf(master)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0) // unlock the other end
	}
	var n int
	if err == nil {
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
	}
	if err == nil {
		err = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}
	if err == nil {
		tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	}
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, tty, nil
}

func termios(f *os.File) (*unix.Termios, error) {
	fd, err := fdOf(f)
	if err != nil {
		return nil, err
	}
	return unix.IoctlGetTermios(fd, unix.TCGETS)
}

// read feeds the screen until the output ends (EIO once the program and
// the parent's copy of the terminal are gone).
func (p *ptyScreen) read() {
	defer close(p.readDone)
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.scr.write(buf[:n])
		if err != nil {
			p.eof = true
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// write types s: keys, as the constants above, and text.
func (p *ptyScreen) write(s string) {
	p.t.Helper()
	_ = p.master.SetWriteDeadline(time.Now().Add(hangGuard)) // a program that stops reading fails the test
	if _, err := p.master.Write([]byte(s)); err != nil {
		p.t.Fatalf("typing %q: %v", s, err)
	}
}

// line types s and Enter.
func (p *ptyScreen) line(s string) { p.write(s + keyEnter) }

// waitFor waits until ok holds for the screen; ok runs with p.mu held.
// what names the wait in the failure message.
func (p *ptyScreen) waitFor(what string, ok func() bool) {
	p.t.Helper()
	guard := time.NewTimer(hangGuard)
	defer guard.Stop()
	for {
		p.mu.Lock()
		done, eof, changed := ok(), p.eof, p.changed
		p.mu.Unlock()
		if done {
			return
		}
		if eof {
			p.t.Fatalf("the program's output ended while waiting for %s\n%s", what, p.dump())
		}
		select {
		case <-changed:
		case <-guard.C:
			p.t.Fatalf("no %s after %v\n%s", what, hangGuard, p.dump())
		}
	}
}

// expect waits for a printed line matching re, after the line the last
// expect matched, and returns its submatches. Printed lines are the rows
// above the cursor's row: lines that ended with a newline, scrolled away
// or not. The prompt's row is never one of them.
func (p *ptyScreen) expect(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	p.waitFor(fmt.Sprintf("line matching %q", re), func() bool {
		for i := max(p.mark, p.scr.first()); i < p.scr.cursorRow(); i++ {
			if m = rx.FindStringSubmatch(p.scr.row(i)); m != nil {
				p.mark = i + 1
				return true
			}
		}
		return false
	})
	return m
}

// expectLine waits until the cursor's row (the prompt and the line being
// typed) matches re.
func (p *ptyScreen) expectLine(re string) {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	p.waitFor(fmt.Sprintf("cursor row matching %q", re), func() bool {
		return rx.MatchString(p.scr.row(p.scr.cursorRow()))
	})
}

// expectScreen waits until ok holds for the visible rows (without
// trailing spaces) and the cursor's position in them.
func (p *ptyScreen) expectScreen(what string, ok func(rows []string, cursorRow, cursorCol int) bool) {
	p.t.Helper()
	p.waitFor(what, func() bool {
		return ok(p.scr.visible(), p.scr.cy, p.scr.cx)
	})
}

// wait waits for the program to exit and returns its exit status.
func (p *ptyProc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(hangGuard):
		p.t.Fatalf("the program did not exit after %v\n%s", hangGuard, p.dump())
	}
	p.mu.Lock()
	err := p.waitErr
	p.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode()
	default:
		p.t.Fatalf("the program ended: %v\n%s", err, p.dump())
		return -1
	}
}

// dump is the screen and what scrolled away, for failure messages.
func (p *ptyScreen) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- output (cursor at row %d, column %d of the screen; the screen is the last %d rows)\n",
		p.scr.cy, p.scr.cx, p.scr.rows)
	for i := p.scr.first(); i < p.scr.end(); i++ {
		fmt.Fprintf(&sb, "%4d |%s\n", i, p.scr.row(i))
	}
	return sb.String()
}

// screen is a terminal's screen, as far as the program drives it: text
// with automatic wrap at the last column, CR, LF (scrolling at the last
// row), BS, TAB, and the CSI sequences for cursor moves (A B C D H f),
// erasing (J K); other sequences are read and ignored. Rows that scroll
// away, or that a clear of the whole screen (ESC[2J) erases, are kept
// above the screen, so that row numbers only grow.
type screen struct {
	rows, cols int
	grid       [][]rune
	cy, cx     int
	wrapNext   bool     // the last column was written: the next rune goes on the next row
	above      []string // rows gone from the screen, oldest first
	dropped    int      // rows dropped from the start of above, to bound it
	pending    []byte   // an unfinished escape sequence or rune
}

// screenKeep bounds the rows kept above the screen.
const screenKeep = 1 << 16

func newScreen(rows, cols int) *screen {
	s := &screen{rows: rows, cols: cols}
	s.grid = make([][]rune, rows)
	for i := range s.grid {
		s.grid[i] = s.blank()
	}
	return s
}

func (s *screen) blank() []rune {
	r := make([]rune, s.cols)
	for i := range r {
		r[i] = ' '
	}
	return r
}

// first and end bound the row numbers kept; the screen is the last rows.
func (s *screen) first() int { return s.dropped }
func (s *screen) end() int   { return s.dropped + len(s.above) + s.rows }

func (s *screen) cursorRow() int { return s.dropped + len(s.above) + s.cy }

// row is row i (first() <= i < end()) without trailing spaces, except
// those before the cursor on its row: the prompt's row reads "> ".
func (s *screen) row(i int) string {
	i -= s.dropped
	if i < len(s.above) {
		return s.above[i]
	}
	return s.screenRow(i - len(s.above))
}

func (s *screen) screenRow(y int) string {
	text := strings.TrimRight(string(s.grid[y]), " ")
	if y == s.cy && utf8.RuneCountInString(text) < s.cx {
		text = string(s.grid[y][:s.cx])
	}
	return text
}

// visible is the screen's rows, as row has them.
func (s *screen) visible() []string {
	v := make([]string, s.rows)
	for y := range v {
		v[y] = s.screenRow(y)
	}
	return v
}

// keep moves row text above the screen.
func (s *screen) keep(text string) {
	s.above = append(s.above, text)
	if len(s.above) > screenKeep {
		n := len(s.above) - screenKeep
		s.above = append(s.above[:0], s.above[n:]...)
		s.dropped += n
	}
}

func (s *screen) write(b []byte) {
	b = append(s.pending, b...)
	s.pending = nil
	for len(b) > 0 {
		n := s.step(b)
		if n == 0 { // unfinished: wait for the rest
			s.pending = append([]byte(nil), b...)
			return
		}
		b = b[n:]
	}
}

// step interprets the start of b and returns how many bytes it used, or
// 0 when b holds only the start of a sequence or rune.
func (s *screen) step(b []byte) int {
	switch c := b[0]; {
	case c == '\x1b':
		return s.escape(b)
	case c == '\r':
		s.cx, s.wrapNext = 0, false
	case c == '\n':
		s.lineFeed()
	case c == '\b':
		if s.cx > 0 {
			s.cx--
		}
		s.wrapNext = false
	case c == '\t':
		s.cx = min((s.cx/8+1)*8, s.cols-1)
	case c < 0x20 || c == 0x7f:
		// other controls: no effect on the text
	default:
		if !utf8.FullRune(b) {
			return 0
		}
		r, n := utf8.DecodeRune(b)
		s.put(r)
		return n
	}
	return 1
}

func (s *screen) put(r rune) {
	if s.wrapNext {
		s.cx, s.wrapNext = 0, false
		s.lineFeed()
	}
	s.grid[s.cy][s.cx] = r
	if s.cx == s.cols-1 {
		s.wrapNext = true
	} else {
		s.cx++
	}
}

func (s *screen) lineFeed() {
	s.wrapNext = false
	if s.cy < s.rows-1 {
		s.cy++
		return
	}
	s.keep(strings.TrimRight(string(s.grid[0]), " "))
	copy(s.grid, s.grid[1:])
	s.grid[s.rows-1] = s.blank()
}

// escape interprets an escape sequence at the start of b.
func (s *screen) escape(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	if b[1] != '[' {
		return 2 // ESC and one byte: nothing the tests look at
	}
	i := 2
	for i < len(b) && (b[i] < 0x40 || b[i] > 0x7e) {
		i++
	}
	if i == len(b) {
		return 0
	}
	s.csi(string(b[2:i]), b[i])
	return i + 1
}

func (s *screen) csi(params string, final byte) {
	var ns []int
	if !strings.HasPrefix(params, "?") {
		for _, f := range strings.Split(params, ";") {
			n, _ := strconv.Atoi(f)
			ns = append(ns, n)
		}
	}
	arg := func(i, def int) int {
		if i < len(ns) && ns[i] > 0 {
			return ns[i]
		}
		return def
	}
	s.wrapNext = false
	switch final {
	case 'A':
		s.cy = max(s.cy-arg(0, 1), 0)
	case 'B':
		s.cy = min(s.cy+arg(0, 1), s.rows-1)
	case 'C':
		s.cx = min(s.cx+arg(0, 1), s.cols-1)
	case 'D':
		s.cx = max(s.cx-arg(0, 1), 0)
	case 'H', 'f':
		s.cy = min(arg(0, 1), s.rows) - 1
		s.cx = min(arg(1, 1), s.cols) - 1
	case 'K':
		s.eraseRow(s.cy, arg(0, 0))
	case 'J':
		s.eraseScreen(arg(0, 0))
	}
}

// eraseRow erases to the right of the cursor (0), to its left (1), or all
// of row y (2).
func (s *screen) eraseRow(y, how int) {
	from, to := s.cx, s.cols
	switch how {
	case 1:
		from, to = 0, s.cx+1
	case 2:
		from = 0
	}
	for x := from; x < to; x++ {
		s.grid[y][x] = ' '
	}
}

// eraseScreen erases below the cursor (0), above it (1), or the whole
// screen (2, 3). The whole screen's rows, to the cursor's at least, move
// above it first, as the terminals that keep a cleared screen in their
// scrollback do.
func (s *screen) eraseScreen(how int) {
	switch how {
	case 0:
		s.eraseRow(s.cy, 0)
		for y := s.cy + 1; y < s.rows; y++ {
			s.grid[y] = s.blank()
		}
	case 1:
		s.eraseRow(s.cy, 1)
		for y := 0; y < s.cy; y++ {
			s.grid[y] = s.blank()
		}
	default:
		last := s.cy
		for y := range s.rows {
			if strings.TrimRight(string(s.grid[y]), " ") != "" {
				last = max(last, y)
			}
		}
		for y := 0; y <= last; y++ {
			s.keep(strings.TrimRight(string(s.grid[y]), " "))
			s.grid[y] = s.blank()
		}
	}
}
