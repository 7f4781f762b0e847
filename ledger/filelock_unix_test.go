//go:build unix

package ledger_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// A ledger file is opened by one FileStore at a time: a second client
// started on the same data folder is refused instead of interleaving its
// writes; once the first closes (or its process dies), it opens.
func TestFileStoreInUse(t *testing.T) {
	g, _ := testBlocks(t)
	path := filepath.Join(t.TempDir(), "ledger.log")
	first, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.OpenFileStore(path, g, ledger.FileOptions{}); !errors.Is(err, ledger.ErrStoreInUse) {
		t.Fatalf("second open = %v, want ErrStoreInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	_ = again.Close()
}
