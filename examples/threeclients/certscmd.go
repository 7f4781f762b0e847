package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// runCerts is "threeclients certs": it writes a certificates folder for
// the clients of -peers or -config (default: the three on loopback).
func runCerts(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("threeclients certs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	dir := fs.String("dir", "", "folder to write (created 0700; keys 0600)")
	peersFlag := fs.String("peers", "", "clients and addresses, as for the clients (only the ids matter here)")
	configFlag := fs.String("config", "", "JSON file with the clients, as for the clients")
	force := fs.Bool("force", false, "replace the keys and certificates already in -dir")
	const short = "usage: threeclients certs -dir DIR [-peers ...|-config FILE] [-force]"
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stdout, short+"\n\nWrites DIR/ca.crt and, for every client N, DIR/client-N.crt and DIR/client-N.key.\nCopy DIR to every machine and start each client with -tls DIR.\n\nflags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	case err == nil && fs.NArg() != 0:
		err = fmt.Errorf("no arguments expected after the flags, got %s", quoteAll(fs.Args()))
	}
	if err != nil {
		fmt.Fprintf(stderr, "threeclients certs: %v\n%s   (\"threeclients certs -h\" lists the flags)\n", err, short)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "threeclients certs: "+format+"\n", a...)
		return 1
	}
	if *dir == "" {
		return fail("-dir is required")
	}
	peers := defaultPeers
	switch {
	case *peersFlag != "" && *configFlag != "":
		return fail("give -peers or -config, not both")
	case *peersFlag != "":
		p, err := parsePeers(*peersFlag)
		if err != nil {
			return fail("%v", err)
		}
		peers = p
	case *configFlag != "":
		fc, err := loadConfigFile(*configFlag)
		if err != nil {
			return fail("%v", err)
		}
		peers = fc.Clients
	}
	members := memberIDs(peers)
	files, err := makeCerts(members)
	if err != nil {
		return fail("%v", err)
	}
	if err := writeCerts(*dir, files, *force); err != nil {
		return fail("%v", err)
	}
	var names []string
	for _, id := range members {
		names = append(names, filepath.Join(*dir, certName(id)))
	}
	fmt.Fprintf(stdout, "wrote %s and, for clients %s, %s and their keys\n",
		filepath.Join(*dir, "ca.crt"), strings.Join(members, ", "), strings.Join(names, ", "))
	fmt.Fprintf(stdout, "copy %s to every machine (each needs ca.crt, every client-N.crt, and its own client-N.key) and start each client with -tls %s\n", *dir, *dir)
	return 0
}
