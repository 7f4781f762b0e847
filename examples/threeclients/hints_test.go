package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/lamportledger/lamportledger/ledger"
)

// Each common dead end keeps its error (errors.Is still matches) and adds
// what to do, naming the file.
func TestStoreHint(t *testing.T) {
	const file, dir = "d/client-2.log", "d"
	tests := []struct {
		err  error
		want []string
	}{
		{fmt.Errorf("ledger store %s: %w: file has genesis a, expected b", file, ledger.ErrGenesisMismatch),
			[]string{"hint: d/client-2.log holds another ledger", "another -data folder", "client-N.log in d", "-memory"}},
		{&ledger.CorruptError{Path: file, Offset: 8, Err: errors.New("record checksum mismatch")},
			[]string{"hint: if the other clients are running and have the blocks, move d/client-2.log aside", "start client 2 again", "peers send it their blocks"}},
		{fmt.Errorf("ledger store %s: %w", file, ledger.ErrStoreInUse),
			[]string{"hint: client 2 is already running with -data d"}},
	}
	for _, tc := range tests {
		got := storeHint(tc.err, "2", file, dir)
		if !errors.Is(got, tc.err) {
			t.Errorf("storeHint(%v) lost the error: %v", tc.err, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("storeHint(%v) = %v, want %q", tc.err, got, w)
			}
		}
	}
	other := errors.New("disk on fire")
	if got := storeHint(other, "2", file, dir); got != other {
		t.Errorf("other errors pass as they are: %v", got)
	}
}

// listenAll says which client cannot listen, and why, once; and it closes
// what it opened before.
func TestListenAll(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addrs := freePorts(t, 2)
	peers := map[string]string{"1": addrs[0], "2": held.Addr().String(), "3": addrs[1]}
	_, err = listenAll([]string{"1", "2", "3"}, peers)
	want := "client 2 cannot listen on " + peers["2"] + ": the port is in use, by another program or another threeclients. Stop it, or give other addresses with -peers or -config"
	if err == nil || err.Error() != want {
		t.Fatalf("listenAll = %v, want %q", err, want)
	}
	ln, err := net.Listen("tcp", addrs[0]) // closed again
	if err != nil {
		t.Fatalf("client 1's address stays taken: %v", err)
	}
	ln.Close()
	lns, err := listenAll([]string{"1", "3"}, peers)
	if err != nil || len(lns) != 2 {
		t.Fatalf("free addresses: %v %v", lns, err)
	}
	for _, l := range lns {
		l.Close()
	}
}

func TestListenError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "listen", Net: "tcp", Err: syscall.EADDRNOTAVAIL}, "client 1 cannot listen on 192.0.2.1:7001: that address is not one of this machine's"},
		{&net.OpError{Op: "listen", Net: "tcp", Err: syscall.EACCES}, "client 1 cannot listen on 192.0.2.1:7001: not allowed to use that port. Use a port above 1023"},
		{errors.New("listen tcp 192.0.2.1:7001: something else"), "client 1 cannot listen on 192.0.2.1:7001: something else"},
	}
	for _, tc := range tests {
		if got := listenError("1", "192.0.2.1:7001", tc.err); !strings.HasPrefix(got.Error(), tc.want) {
			t.Errorf("listenError(%v) = %v, want %q", tc.err, got, tc.want)
		}
	}
}
