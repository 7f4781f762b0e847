package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestInprocessDemo(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out, errb bytes.Buffer
	if code := run([]string{"-count", "40", "-seed", "3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	if !strings.Contains(out.String(), "chains identical") || !strings.Contains(out.String(), "total money 30, as at genesis") {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}

func TestInprocessBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-clients", "1"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}
