package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestInprocess runs the demo and checks what it prints: three clients
// with the same balance table and head, and no money created or lost.
func TestInprocess(t *testing.T) {
	defer goleak.VerifyNone(t)
	var out bytes.Buffer
	if err := run(context.Background(), &out, 40); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got:\n%s", out.String())
	}
	line := regexp.MustCompile(`^client (\d): (map\[1:(\d+) 2:(\d+) 3:(\d+)\] head #\d+ [0-9a-f]+)$`)
	var first string
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected line %q", l)
		}
		sum := 0
		for _, v := range m[3:] {
			n, _ := strconv.Atoi(v)
			sum += n
		}
		if sum != 30 {
			t.Errorf("client %s: money changed: %s", m[1], m[2])
		}
		if first == "" {
			first = m[2]
		} else if m[2] != first {
			t.Errorf("client %s disagrees: %q, want %q", m[1], m[2], first)
		}
	}
	t.Log("\n" + out.String())
}
