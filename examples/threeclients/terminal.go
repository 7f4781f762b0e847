package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/term"
)

// Keys the editor handles itself, before the line editor sees them.
const (
	keyCtrlC = 0x03
	keyCtrlE = 0x05 // end of line
	keyCtrlU = 0x15 // erase to the start of the line
)

// pasteStart is what a terminal sends before pasted text when bracketed
// paste is on. The editor never turns it on, and drops the sequence: in
// paste mode x/term's editor neither bounds the line nor sees Ctrl-C.
const pasteStart = "\x1b[200~"

// editorLineRunes is the longest line the editor keeps: x/term's editor
// stops taking keys at 4096 runes, so a line that long may have been cut
// and is refused whole. It is far below maxLine.
const editorLineRunes = 4096 - 1

// historyLines bounds the editor's history.
const historyLines = 100

// lineEditor reads lines from a terminal in raw mode with x/term's line
// editor: history (Up, Down, Ctrl-P, Ctrl-N), Left, Right, Home, End,
// Backspace, Delete, Ctrl-A, E, K, U, W, T, and Ctrl-L to clear the
// screen. Ctrl-D on an empty line ends the input; Ctrl-C calls interrupt.
//
// Lines written to it (Write) appear above the prompt, and the prompt and
// the half-typed line are drawn again below them. One goroutine reads the
// terminal; Close stops it, restores the terminal's state, and leaves the
// cursor at the start of an empty line. Every method is safe to call from
// any goroutine.
type lineEditor struct {
	t     *term.Terminal
	out   *os.File
	fd    int         // the terminal's descriptor, for its state and size
	state *term.State // to restore
	keys  *keyReader
	input ttyInput

	lines chan inputLine
	stop  chan struct{} // closed by Close: the reader stops
	done  chan struct{} // closed when the reader has stopped

	stopResize func()

	mu     sync.Mutex // orders Close after every Write through t
	closed bool

	closeOnce sync.Once
}

// openTerminal puts the terminal in (standard input, a terminal) into raw
// mode and starts reading lines from it; out must be the same terminal's
// output. interrupt is called, from the reader, each time Ctrl-C is
// pressed. It fails when in cannot be read in a way that Close can stop
// (see openTTYInput); the terminal is then left as it was.
func openTerminal(in, out *os.File, interrupt func()) (*lineEditor, error) {
	fd, err := fdOf(in)
	if err != nil {
		return nil, err
	}
	input, err := openTTYInput(in, fd)
	if err != nil {
		return nil, err
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		input.close()
		return nil, fmt.Errorf("raw mode: %w", err)
	}
	e := &lineEditor{
		out:   out,
		fd:    fd,
		state: state,
		keys:  &keyReader{r: input.f, interrupt: interrupt},
		input: input,
		lines: make(chan inputLine),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	e.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{e.keys, out}, "> ")
	e.t.History = &history{}
	e.resize()
	e.stopResize = watchResize(e.resize)
	go e.read()
	return e, nil
}

// Lines is the input: each line typed, or why it was refused. It is closed
// at the end of the input (Ctrl-D on an empty line), on a read error after
// sending it, and by Close.
func (e *lineEditor) Lines() <-chan inputLine { return e.lines }

func (e *lineEditor) read() {
	defer close(e.done)
	defer close(e.lines)
	for {
		line, err := e.t.ReadLine()
		if errors.Is(err, term.ErrPasteIndicator) {
			err = nil
		}
		var in inputLine
		switch {
		case err == io.EOF:
			return
		case err != nil:
			select {
			case <-e.stop:
				return
			default:
			}
			in.err = fmt.Errorf("reading the terminal: %w", err)
		case utf8.RuneCountInString(line) > editorLineRunes:
			in.err = fmt.Errorf("line longer than %d characters ignored", editorLineRunes)
		default:
			in.text = line
		}
		select {
		case e.lines <- in:
		case <-e.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Write prints p above the prompt as whole lines: a p that does not end
// with a newline gets one. After Close it writes p to the terminal as it
// is. It never fails on the editor's account; the terminal's write error,
// if any, is returned.
func (e *lineEditor) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.out.Write(p)
	}
	b := p
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b[:len(b):len(b)], '\n')
	}
	if _, err := e.t.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetPrompt shows prompt before the line being typed, from now on. Runes
// that are not printable are dropped from it.
func (e *lineEditor) SetPrompt(prompt string) {
	prompt = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, prompt)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.t.SetPrompt(prompt)
	_, _ = e.t.Write(nil) // draws the prompt again, if it is on the screen
}

// Close stops the reader, erases the prompt and the half-typed line, and
// restores the terminal's state. Later calls do nothing.
func (e *lineEditor) Close() {
	e.closeOnce.Do(func() {
		close(e.stop)
		e.input.interrupt()
		<-e.done
		e.stopResize()

		e.mu.Lock()
		defer e.mu.Unlock()
		// The reader is gone, so one more ReadLine here is alone with the
		// editor: End and Ctrl-U empty the line, and its read then fails
		// at once, as the input stays interrupted. A write with an empty
		// prompt then erases the prompt.
		e.keys.push(string([]byte{keyCtrlE, keyCtrlU}))
		_, _ = e.t.ReadLine()
		e.t.SetPrompt("")
		_, _ = e.t.Write(nil)
		e.closed = true
		_ = term.Restore(e.fd, e.state)
		e.input.close()
	})
}

func (e *lineEditor) resize() {
	w, h, err := term.GetSize(e.fd)
	if err != nil || w <= 0 || h <= 0 {
		return
	}
	_ = e.t.SetSize(w, h)
}

// keyReader is what x/term's editor reads keys from. It takes out each
// Ctrl-C (calling interrupt instead) and each bracketed-paste start.
// Only the editor's reader calls Read, except in Close after the reader
// has stopped.
type keyReader struct {
	r         io.Reader
	interrupt func()
	buf       [256]byte
	in        []byte // read and not yet handed on; aliases buf
	err       error  // the read error, handed on once in is empty
}

// Read hands on at least one byte, or the read error.
func (k *keyReader) Read(p []byte) (int, error) {
	for {
		if n := k.filter(p); n > 0 {
			return n, nil
		}
		if k.err != nil {
			err := k.err
			k.err = nil
			return 0, err
		}
		// Keep what is held back (a prefix of pasteStart) and read more.
		held := copy(k.buf[:], k.in)
		n, err := k.r.Read(k.buf[held:])
		k.in, k.err = k.buf[:held+n], err
	}
}

// filter moves keys from k.in to p. A prefix of pasteStart at the end of
// k.in waits for the bytes after it, unless the input has ended.
func (k *keyReader) filter(p []byte) int {
	n := 0
	for len(k.in) > 0 && n < len(p) {
		c := k.in[0]
		switch {
		case c == keyCtrlC:
			k.interrupt()
			k.in = k.in[1:]
			continue
		case strings.HasPrefix(string(k.in), pasteStart):
			k.in = k.in[len(pasteStart):]
			continue
		case c == pasteStart[0] && len(k.in) < len(pasteStart) &&
			strings.HasPrefix(pasteStart, string(k.in)) && k.err == nil:
			return n
		}
		p[n] = c
		n++
		k.in = k.in[1:]
	}
	return n
}

// push puts keys before what is still to be read. It is for Close, when
// the reader has stopped.
func (k *keyReader) push(keys string) {
	rest := string(k.in)
	k.in = append(k.buf[:0], keys+rest...)
}

// history is the editor's history: at most historyLines lines, without
// empty lines, repeats of the line before, or lines too long to run.
type history struct {
	lines []string // oldest first
}

func (h *history) Add(line string) {
	if strings.TrimSpace(line) == "" || utf8.RuneCountInString(line) > editorLineRunes {
		return
	}
	if n := len(h.lines); n > 0 && h.lines[n-1] == line {
		return
	}
	if len(h.lines) == historyLines {
		copy(h.lines, h.lines[1:])
		h.lines = h.lines[:len(h.lines)-1]
	}
	h.lines = append(h.lines, line)
}

func (h *history) Len() int { return len(h.lines) }

// At returns the line i places back from the newest (0).
func (h *history) At(i int) string { return h.lines[len(h.lines)-1-i] }

// openEditor starts the line editor when standard input and output are
// both terminals, and returns where the program's output and error text
// go: through the editor when they go to the terminal, so that they appear
// above the prompt. With no editor (piped input or output, or a terminal
// the editor cannot use, which it says on stderr) editor is nil and
// stdout and stderr come back as they are.
func openEditor(stdin io.Reader, stdout, stderr io.Writer, interrupt func()) (editor *lineEditor, out, errOut io.Writer) {
	in, inOK := stdin.(*os.File)
	o, outOK := stdout.(*os.File)
	if !inOK || !outOK || !isTerminal(in) || !isTerminal(o) {
		return nil, stdout, stderr
	}
	e, err := openTerminal(in, o, interrupt)
	if err != nil {
		fmt.Fprintf(stderr, "threeclients: no line editor, reading plain lines: %v\n", err)
		return nil, stdout, stderr
	}
	if ef, ok := stderr.(*os.File); ok && isTerminal(ef) {
		return e, e, e
	}
	return e, e, stderr
}
