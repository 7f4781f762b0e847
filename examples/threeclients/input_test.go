package main

import (
	"strings"
	"testing"
)

func readAll(input string, max int) []inputLine {
	ch := make(chan inputLine)
	go readLines(strings.NewReader(input), max, ch)
	var out []inputLine
	for l := range ch {
		out = append(out, l)
	}
	return out
}

// Lines up to max bytes are read whole; a longer one is refused with one
// error, and reading goes on after it.
func TestReadLines(t *testing.T) {
	const max = 100 << 10 // more than the reader's buffer
	exact := strings.Repeat("a", max)
	long := strings.Repeat("b", max+1)
	huge := strings.Repeat("c", 3*max)
	in := "one\r\n" + exact + "\n" + long + "\n" + huge + "\n\nlast"
	got := readAll(in, max)
	want := []string{"one", exact, "!", "!", "", "last"}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		switch {
		case w == "!" && (got[i].err == nil || !strings.Contains(got[i].err.Error(), "line longer than 102400 bytes ignored")):
			t.Errorf("line %d: %v, want the too-long error", i, got[i].err)
		case w != "!" && (got[i].err != nil || got[i].text != w):
			t.Errorf("line %d: %.20q %v, want %.20q", i, got[i].text, got[i].err, w)
		}
	}
	if got := readAll(long, max); len(got) != 1 || got[0].err == nil {
		t.Fatalf("a too-long last line without newline: %v", got)
	}
}
