//go:build unix

package ledger_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// A store's folder is created 0700 and its file 0600, whatever the umask
// allows; an existing file open to others is made private.
func TestFileStorePrivate(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(2), 10, testPub)
	dir := filepath.Join(t.TempDir(), "data", "node")
	path := filepath.Join(dir, "ledger.log")
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Dir(dir): 0o700, path: 0o600} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", p, got, want)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("reopened file has mode %v, want 0600", info.Mode().Perm())
	}
}

// A symbolic link at the store's path, dangling or not, is refused: the
// store would otherwise write where the link's maker chose.
func TestFileStoreRefusesSymlink(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(2), 10, testPub)
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	for name, exists := range map[string]bool{"dangling": false, "to a file": true} {
		t.Run(name, func(t *testing.T) {
			_ = os.Remove(target)
			if exists {
				if err := os.WriteFile(target, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(dir, "link-"+name)
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			s, err := ledger.OpenFileStore(link, g, ledger.FileOptions{})
			if err == nil {
				_ = s.Close()
			}
			if !errors.Is(err, ledger.ErrSymlink) {
				t.Fatalf("open through a %s symlink: %v, want ErrSymlink", name, err)
			}
			if info, err := os.Stat(target); exists && (err != nil || info.Size() != 0) {
				t.Fatalf("target written: %v, %v", info, err)
			} else if !exists && err == nil {
				t.Fatal("the dangling link's target was created")
			}
		})
	}
}

// A symbolic link at the checkpoint file's path is not followed: opening
// ignores it, with a warning, and SaveCheckpoint replaces the link itself,
// leaving its target alone.
func TestFileStoreCheckpointSymlink(t *testing.T) {
	g, _ := ledger.NewGenesis(memberIDs(3), 10, testPub)
	blocks := storeBlocks(g, 5)
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.log")
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ledger.OpenFileStore(path, g, ledger.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := os.Symlink(target, path+".checkpoint"); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err = ledger.OpenFileStore(path, g, ledger.FileOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "ignoring the checkpoint") {
		t.Fatalf("no warning about the linked checkpoint: %q", logs.String())
	}
	if err := s.Append(blocks[1:]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(4, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the link's target was written: %q", b)
	}
	info, err := os.Lstat(path + ".checkpoint")
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 {
		t.Fatalf("checkpoint file: %v, %v", info, err)
	}
}
