// Command threeclients runs clients of a replicated ledger that take turns
// through Lamport's distributed mutual exclusion, over TCP.
//
// In three terminals:
//
//	go run ./examples/threeclients 1
//	go run ./examples/threeclients 2
//	go run ./examples/threeclients 3
//
// or all three clients in one process, with one prompt where each command
// starts with the client that issues it ("1 transfer 2 5"):
//
//	go run ./examples/threeclients
//
// Peers authenticate each other with mutual TLS: on one machine with
// certificates made on the first start in <data>/certs; across machines
// with a folder made once and copied to each,
//
//	go run ./examples/threeclients certs -dir DIR -peers 1=host1:7001,2=host2:7001,3=host3:7001
//	go run ./examples/threeclients -tls DIR -peers 1=host1:7001,2=host2:7001,3=host3:7001 1
//
// Each certificate's key also signs the blocks its client appends.
//
// Type help for the commands. See the README for flags and a sample session.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "certs" {
		return runCerts(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("threeclients", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: threeclients [flags] [clientnum]\n       threeclients certs -dir DIR [-peers ...|-config FILE] [-force]\n\nWith a client number, runs that client; without, runs every client in one process.\n\nflags:")
		fs.PrintDefaults()
	}
	peersFlag := fs.String("peers", "", "clients and addresses, e.g. 1=host:port,2=host:port,3=host:port (default 127.0.0.1:7001-7003)")
	configFlag := fs.String("config", "", "JSON file with the clients and addresses (see clients.example.json)")
	balance := fs.Int64("balance", 10, "every client's initial balance")
	delay := fs.Duration("delay", 0, "delay every message sent by this long (e.g. 3s) to watch concurrency")
	trace := fs.Bool("trace", false, "print every message sent and received and every clock change")
	dataDir := fs.String("data", "lamportledger-data", "folder for the ledger files (one per client) and, without -tls, the certificates made on first start")
	memory := fs.Bool("memory", false, "keep the ledger in memory only")
	tlsDir := fs.String("tls", "", "certificates folder made by \"threeclients certs\": mutual TLS with its certificates, and blocks signed with its keys")
	insecure := fs.Bool("insecure", false, "no TLS: peers talk in plaintext, unauthenticated (blocks are still signed); allows peers that are not on loopback without -tls")
	verbose := fs.Bool("v", false, "log every connection event to stderr (refusals and broken connections are always logged)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithCancel(ctx) // Ctrl-C in the line editor cancels it, as SIGINT does
	defer cancel()
	editor, stdout, stderr := openEditor(stdin, stdout, stderr, cancel)
	if editor != nil {
		defer editor.Close() // after the printers below have written everything
		fs.SetOutput(stderr)
	}
	out, errOut := newPrinter(stdout), newPrinter(stderr)
	defer errOut.close()
	defer out.close()
	fail := func(format string, a ...any) int {
		errOut.raw(fmt.Sprintf("threeclients: "+format+"\n", a...))
		return 1
	}

	opts := options{peers: defaultPeers, balance: *balance, delay: *delay, trace: *trace,
		dataDir: *dataDir, memory: *memory, insecure: *insecure, out: out}
	switch {
	case *peersFlag != "" && *configFlag != "":
		return fail("give -peers or -config, not both")
	case *peersFlag != "":
		p, err := parsePeers(*peersFlag)
		if err != nil {
			return fail("%v", err)
		}
		opts.peers = p
	case *configFlag != "":
		fc, err := loadConfigFile(*configFlag)
		if err != nil {
			return fail("%v", err)
		}
		opts.peers = fc.Clients
		if fc.Balance != 0 && !isFlagSet(fs, "balance") {
			opts.balance = fc.Balance
		}
	}
	if opts.balance <= 0 {
		return fail("-balance must be positive, got %d", opts.balance)
	}
	if opts.delay < 0 {
		return fail("-delay must not be negative")
	}
	opts.members = memberIDs(opts.peers)
	for _, id := range opts.members {
		if err := checkCertID(id); err != nil {
			return fail("%v", err)
		}
	}
	if err := checkExposure(opts.peers, *tlsDir != "", *insecure); err != nil {
		return fail("%v", err)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	var h slog.Handler = slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})
	if !*verbose {
		h = newOnceHandler(h, opts.members) // say why a peer refuses once, not at every retry
	}
	opts.logger = slog.New(h)

	var ids []string
	switch fs.NArg() {
	case 0:
		ids = opts.members
	case 1:
		id := fs.Arg(0)
		if _, ok := opts.peers[id]; !ok {
			return fail("unknown client %s (clients: %s)", strconv.Quote(id), strings.Join(opts.members, ", "))
		}
		ids = []string{id}
	default:
		fs.Usage()
		return 2
	}

	var err error
	opts.ids, err = identitiesFor(opts, *tlsDir, ids)
	if err != nil {
		return fail("%v", err)
	}
	if *insecure {
		errOut.raw("threeclients: -insecure: TLS is off; peers are not authenticated and the network sees every message (blocks are still signed with the keys in " + opts.ids.dir + ")\n")
	}

	clients := map[string]*client{}
	closeAll := func() {
		// Let transfers in flight finish; a signal abandons those still
		// waiting for the lock.
		done := make(chan struct{})
		go func() {
			for _, c := range clients {
				c.work.Wait()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			for _, c := range clients {
				c.stop()
			}
			<-done
		}
		for _, id := range ids {
			if c := clients[id]; c != nil {
				c.close()
			}
		}
	}
	for _, id := range ids {
		c, err := startClient(id, opts)
		if err != nil {
			closeAll()
			return fail("client %s: %v", id, err)
		}
		clients[id] = c
	}

	interactive := isTerminal(stdin) && editor == nil // the editor draws its own prompt
	prefix := len(ids) > 1
	opts.out.raw(helpText + "\n")
	if prefix {
		opts.out.raw("start each command with the client that issues it, e.g. \"1 transfer 2 5\"\n")
	}
	var lines <-chan inputLine
	if editor != nil {
		lines = editor.Lines()
	} else {
		plain := make(chan inputLine)
		go readLines(stdin, maxLine, plain) // ends with the process; a blocked read cannot be interrupted
		lines = plain
	}
	for {
		if interactive {
			opts.out.raw("> ")
		}
		var in inputLine
		var ok bool
		select {
		case <-ctx.Done():
			opts.out.raw("\n")
			closeAll()
			return 0
		case in, ok = <-lines:
		}
		if !ok {
			closeAll()
			return 0
		}
		if in.err != nil {
			opts.out.raw("error: " + in.err.Error() + "\n")
			continue
		}
		line := in.text
		c, text, err := route(line, ids, clients, prefix)
		if err != nil {
			if err != errEmpty {
				opts.out.raw("error: " + err.Error() + "\n")
			}
			continue
		}
		cmd, err := parseCommand(text, c.id, opts.members)
		switch {
		case err == errEmpty:
			continue
		case err != nil:
			c.say("error: %v", err)
			continue
		case cmd.name == "exit":
			closeAll()
			return 0
		}
		c.execute(ctx, cmd)
	}
}

// maxLine is the longest input line read; a longer one is refused whole.
const maxLine = 1 << 20

// inputLine is one line of input, or why it was refused.
type inputLine struct {
	text string
	err  error
}

// readLines sends each line of r (without its end of line) to lines and
// closes lines at the end of r. A line longer than max is skipped with an
// error; a read error other than the end of r is sent, then ends the input.
func readLines(r io.Reader, max int, lines chan<- inputLine) {
	defer close(lines)
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+2 { // room for "\r\n"
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if (len(chunk) > 0 || len(buf) > 0 || tooLong) && (err == nil || err == io.EOF) {
			if tooLong {
				lines <- inputLine{err: fmt.Errorf("line longer than %d bytes ignored", max)}
			} else {
				line := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
				if len(line) > max {
					lines <- inputLine{err: fmt.Errorf("line longer than %d bytes ignored", max)}
				} else {
					lines <- inputLine{text: line}
				}
			}
			buf, tooLong = buf[:0], false
		}
		if err != nil {
			if err != io.EOF {
				lines <- inputLine{err: fmt.Errorf("reading input: %w", err)}
			}
			return
		}
	}
}

// route picks the client a line is for.
func route(line string, ids []string, clients map[string]*client, prefix bool) (*client, string, error) {
	if !prefix {
		return clients[ids[0]], line, nil
	}
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return nil, "", errEmpty
	}
	if c, ok := clients[f[0]]; ok {
		if len(f) == 1 {
			return nil, "", fmt.Errorf("client %s: what should it do? (type \"%s help\")", f[0], f[0])
		}
		return c, strings.Join(f[1:], " "), nil
	}
	if f[0] == "help" || f[0] == "exit" || f[0] == "quit" {
		return clients[ids[0]], line, nil
	}
	return nil, "", fmt.Errorf("start the command with the client that issues it, one of %s (e.g. \"%s transfer %s 5\")",
		strings.Join(ids, ", "), ids[0], ids[len(ids)-1])
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
