package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/lamportledger/lamportledger/ledger"
)

// storeHint adds to an error of opening client id's ledger file what to do
// about it, where the error is a common dead end.
func storeHint(err error, id, file, dataDir string) error {
	switch {
	case errors.Is(err, ledger.ErrGenesisMismatch):
		return fmt.Errorf("%w\nhint: %s holds another ledger than these settings make (other clients, -balance, or certificates). "+
			"Start with the settings it was made with; or start a new ledger: give every client another -data folder, "+
			"delete the clients' ledger files (client-N.log in %s), or use -memory", err, file, dataDir)
	case errors.Is(err, ledger.ErrCorrupt):
		return fmt.Errorf("%w\nhint: if the other clients are running and have the blocks, move %s aside (or delete it) and start client %s again: "+
			"it starts from the genesis and its peers send it their blocks", err, file, quoteID(id))
	case errors.Is(err, ledger.ErrStoreInUse):
		return fmt.Errorf("%w\nhint: client %s is already running with -data %s; stop it, or give this one another -data folder", err, quoteID(id), dataDir)
	}
	return err
}

// listenAll opens the listening socket of every client in ids, before any
// of them starts, so that an address in use stops the start with one
// message and nothing started. On an error it closes what it opened.
func listenAll(ids []string, peers map[string]string) (map[string]net.Listener, error) {
	lns := make(map[string]net.Listener, len(ids))
	for _, id := range ids {
		ln, err := net.Listen("tcp", peers[id])
		if err != nil {
			for _, l := range lns {
				_ = l.Close()
			}
			return nil, listenError(id, peers[id], err)
		}
		lns[id] = ln
	}
	return lns, nil
}

// listenError says why client id cannot listen on addr, and what to do.
func listenError(id, addr string, err error) error {
	what := ""
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		what = "the port is in use, by another program or another threeclients. Stop it, or give other addresses with -peers or -config"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		what = "that address is not one of this machine's. Give this client's own address in -peers or -config"
	case errors.Is(err, syscall.EACCES):
		what = "not allowed to use that port. Use a port above 1023"
	default:
		what = err.Error()
		if _, after, ok := strings.Cut(what, ": "); ok && strings.HasPrefix(what, "listen ") {
			what = after // "listen tcp ADDR: " repeats what is said already
		}
	}
	return fmt.Errorf("client %s cannot listen on %s: %s", quoteID(id), addr, what)
}
