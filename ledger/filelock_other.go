//go:build !unix

package ledger

import "os"

// lockFile does nothing where flock(2) is missing: on such systems two
// processes must not open one ledger file.
func lockFile(*os.File) error { return nil }

// openNoFollow is 0 where O_NOFOLLOW is missing: a symbolic link at the
// store's path is followed there.
const openNoFollow = 0

func isSymlinkError(error) bool { return false }
