package main

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// chunks reads its strings one per Read.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, io.EOF
	}
	n := copy(p, (*c)[0])
	(*c)[0] = (*c)[0][n:]
	if (*c)[0] == "" {
		*c = (*c)[1:]
	}
	return n, nil
}

// Ctrl-C is taken out and reported; a bracketed-paste start is dropped,
// even split across reads; an Escape that starts something else passes,
// and so does a prefix of the paste start cut by the end of the input.
func TestKeyReader(t *testing.T) {
	in := chunks{"ab\x03c", "\x1b[2", "00~d\x1b", "[A\x03", "\x1b[20"}
	interrupts := 0
	k := &keyReader{r: &in, interrupt: func() { interrupts++ }}
	got, err := io.ReadAll(iotest.OneByteReader(k))
	if err != nil {
		t.Fatal(err)
	}
	if want := "abcd\x1b[A\x1b[20"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if interrupts != 2 {
		t.Fatalf("%d interrupts, want 2", interrupts)
	}
}

// The history keeps the newest lines, without empty lines, repeats of the
// line before, or lines too long to run.
func TestHistory(t *testing.T) {
	var h history
	h.Add("a")
	h.Add("a")
	h.Add("  ")
	h.Add(strings.Repeat("x", editorLineRunes+1))
	h.Add("b")
	if h.Len() != 2 || h.At(0) != "b" || h.At(1) != "a" {
		t.Fatalf("got %q", h.lines)
	}
	for i := range historyLines + 5 {
		h.Add(strings.Repeat("y", i+1))
	}
	if h.Len() != historyLines || h.At(0) != strings.Repeat("y", historyLines+5) {
		t.Fatalf("len %d, newest %q", h.Len(), h.At(0))
	}
}
