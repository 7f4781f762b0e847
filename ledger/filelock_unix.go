//go:build unix

package ledger

import (
	"errors"
	"os"
	"syscall"
)

// openNoFollow makes open(2) refuse a symbolic link as the last element
// of the path.
const openNoFollow = syscall.O_NOFOLLOW

// isSymlinkError reports whether err is open(2)'s refusal of a symbolic
// link under O_NOFOLLOW.
func isSymlinkError(err error) bool { return errors.Is(err, syscall.ELOOP) }

// lockFile takes an exclusive advisory lock on f, without waiting. The
// kernel drops it when f is closed or the process dies, so a crash never
// leaves a stale lock.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrStoreInUse
	}
	return err
}
