package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each start's incarnation is later than the last one recorded, even when
// the clock has stepped back since.
func TestIncarnationGrowsWhenTheClockStepsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-1.incarnation")
	now := time.Unix(1_800_000_000, 0)
	first, err := nextIncarnation(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if first != uint64(now.UnixNano()) {
		t.Fatalf("first incarnation %d, want the time %d", first, now.UnixNano())
	}
	back, err := nextIncarnation(path, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if back != first+1 {
		t.Fatalf("after the clock stepped back: %d, want %d", back, first+1)
	}
	later := now.Add(time.Hour)
	if got, err := nextIncarnation(path, later); err != nil || got != uint64(later.UnixNano()) {
		t.Fatalf("later: %d, %v; want the time %d", got, err, later.UnixNano())
	}
}

// A file that holds no incarnation is refused with a clear error, and not
// overwritten.
func TestIncarnationFileDamaged(t *testing.T) {
	for _, body := range []string{"", "x", "0", "18446744073709551615", strings.Repeat("9", 40)} {
		path := filepath.Join(t.TempDir(), "client-1.incarnation")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := nextIncarnation(path, time.Now())
		if err == nil || !strings.Contains(err.Error(), "delete it") {
			t.Fatalf("%q: %v, want an error that says to delete the file", body, err)
		}
		if b, _ := os.ReadFile(path); string(b) != body {
			t.Fatalf("%q: the file now holds %q", body, b)
		}
	}
}
