package transport

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

var fuzzCheck = helloCheck{version: protocolVersion, self: "a", cluster: "genesis", known: func(id string) bool { return id == "b" }}

func encodeHello(t testing.TB, version uint16, h hello) []byte {
	var b bytes.Buffer
	if err := writeHello(bufio.NewWriter(&b), version, h); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeWelcome(t testing.TB, version uint16, wl welcome) []byte {
	var b bytes.Buffer
	if err := writeWelcome(bufio.NewWriter(&b), version, wl); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func handshakeSeeds(t testing.TB) [][]byte {
	good := hello{From: "b", To: "a", Cluster: "genesis", Incarnation: 42}
	return [][]byte{
		encodeHello(t, protocolVersion, good),
		encodeHello(t, protocolVersion+1, good),
		encodeHello(t, protocolVersion, hello{From: "zz", To: "a", Cluster: "genesis", Incarnation: 1}),
		encodeWelcome(t, protocolVersion, welcome{From: "b", Incarnation: 9, Resume: 3}),
		encodeWelcome(t, protocolVersion, welcome{From: "b", Incarnation: 9, Refusal: "no"}),
		[]byte("LLTP\x00\x01\x00\x00\x00\x01\xc1"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
	}
}

// FuzzHandshake feeds arbitrary bytes to both halves of the handshake: no
// panic, and nothing is accepted that breaks a check.
func FuzzHandshake(f *testing.F) {
	for _, s := range handshakeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, _, err := readHello(bufio.NewReader(bytes.NewReader(data)), fuzzCheck)
		if err == nil && (h.From != "b" || h.To != "a" || h.Cluster != "genesis" || h.Incarnation == 0) {
			t.Fatalf("accepted %+v", h)
		}
		wl, err := readWelcome(bufio.NewReader(bytes.NewReader(data)), protocolVersion, "b")
		if err == nil && (wl.From != "b" || wl.Incarnation == 0 || wl.Refusal != "") {
			t.Fatalf("accepted %+v", wl)
		}
	})
}

func TestHandshakeChecks(t *testing.T) {
	good := hello{From: "b", To: "a", Cluster: "genesis", Incarnation: 42}
	for _, tc := range []struct {
		version uint16
		h       hello
		want    error
		refuse  bool
	}{
		{protocolVersion, good, nil, false},
		{protocolVersion + 1, good, ErrVersionMismatch, true},
		{protocolVersion, hello{From: "c", To: "a", Cluster: "genesis", Incarnation: 1}, ErrUnknownPeer, true},
		{protocolVersion, hello{From: "a", To: "a", Cluster: "genesis", Incarnation: 1}, ErrUnknownPeer, true},
		{protocolVersion, hello{From: "b", To: "x", Cluster: "genesis", Incarnation: 1}, ErrWrongPeer, true},
		{protocolVersion, hello{From: "b", To: "a", Cluster: "other", Incarnation: 1}, ErrClusterMismatch, true},
		{protocolVersion, hello{From: "b", To: "a", Cluster: "genesis"}, ErrProtocol, true},
	} {
		h, refuse, err := readHello(bufio.NewReader(bytes.NewReader(encodeHello(t, tc.version, tc.h))), fuzzCheck)
		if !errors.Is(err, tc.want) || refuse != tc.refuse || (err == nil && h != tc.h) {
			t.Errorf("readHello(v%d %+v) = %+v, %v, %v", tc.version, tc.h, h, refuse, err)
		}
	}
	wl := welcome{From: "b", Incarnation: 9, Resume: 3}
	if got, err := readWelcome(bufio.NewReader(bytes.NewReader(encodeWelcome(t, protocolVersion, wl))), protocolVersion, "b"); err != nil || got != wl {
		t.Errorf("readWelcome = %+v, %v", got, err)
	}
	if _, err := readWelcome(bufio.NewReader(bytes.NewReader(encodeWelcome(t, protocolVersion, wl))), protocolVersion, "c"); !errors.Is(err, ErrWrongPeer) {
		t.Errorf("welcome from the wrong peer: %v", err)
	}
}
