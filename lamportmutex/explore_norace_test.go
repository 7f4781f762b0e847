//go:build !race

package lamportmutex

// raceEnabled reports whether the race detector is on; the heavier
// explorations skip themselves then.
const raceEnabled = false
