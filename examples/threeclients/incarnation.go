package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// nextIncarnation returns the transport incarnation for this start of a
// client, and records it in path: the current time in nanoseconds, or one
// more than the incarnation recorded there if that is later. Peers refuse
// an incarnation older than one they have seen (as a replay), so a clock
// that stepped back since the last start would otherwise have them refuse
// this client until the clock passed its old reading.
func nextIncarnation(path string, now time.Time) (uint64, error) {
	inc := max(uint64(now.UnixNano()), 1)
	last, err := readIncarnation(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		inc = max(inc, last+1)
	}
	if err := writeFileAtomic(path, []byte(strconv.FormatUint(inc, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("record the incarnation: %w", err)
	}
	return inc, nil
}

// readIncarnation reads the incarnation recorded in path.
func readIncarnation(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 32)) // a uint64 has at most 20 digits
	if err != nil {
		return 0, err
	}
	inc, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || inc == 0 || inc == math.MaxUint64 {
		return 0, fmt.Errorf("%s does not hold an incarnation (%q); delete it", path, b)
	}
	return inc, nil
}
