// Command threeclients runs clients of a replicated ledger that take turns
// through Lamport's distributed mutual exclusion, over TCP.
//
// In three terminals:
//
//	go run ./examples/threeclients 1
//	go run ./examples/threeclients 2
//	go run ./examples/threeclients 3
//
// or all three clients in one process, with one prompt that takes the
// course's syntax ("transfer 1 2 5", "print balance table"), or a line that
// starts with a client ("2 transfer 3 1") for that client alone:
//
//	go run ./examples/threeclients
//
// Each client runs its commands in the order given; every line a client
// prints starts with its id and its Lamport clock ("[2 @13]").
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
// With -http 127.0.0.1:8080 the process also serves a live page of its
// clients (a space-time diagram of their messages, their queues, chains and
// balances, and a command line), Prometheus metrics at /metrics and Go's
// profiles at /debug/pprof/.
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
	a, err := parseArgs(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		writeUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "threeclients: %v\n%s\n", err, shortUsage)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx) // Ctrl-C in the line editor cancels it, as SIGINT does
	defer cancel()
	editor, stdout, stderr := openEditor(stdin, stdout, stderr, cancel)
	if editor != nil {
		defer editor.Close() // after the printers below have written everything
	}
	var live *liveHub
	if a.http != "" {
		live = newLiveHub()
		stdout = io.MultiWriter(stdout, live) // the page shows the output too
	}
	out, errOut := newPrinter(stdout), newPrinter(stderr)
	defer errOut.close()
	defer out.close()
	fail := func(format string, a ...any) int {
		errOut.raw(fmt.Sprintf("threeclients: "+format+"\n", a...))
		return 1
	}

	opts, ids, err := resolve(a)
	if err != nil {
		return fail("%v", err)
	}
	opts.out = out
	opts.live = live
	level := slog.LevelWarn
	if a.verbose {
		level = slog.LevelInfo
	}
	var h slog.Handler = slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})
	if !a.verbose {
		h = newOnceHandler(h, opts.members) // say why a peer refuses once, not at every retry
	}
	opts.logger = slog.New(h)

	opts.ids, err = identitiesFor(opts, a.tlsDir, ids)
	if err != nil {
		return fail("%v", err)
	}
	if opts.listeners, err = listenAll(ids, opts.peers); err != nil {
		return fail("%v", err)
	}
	if a.insecure {
		errOut.raw("threeclients: -insecure: TLS is off; peers are not authenticated and the network sees every message (blocks are still signed with the keys in " + opts.ids.dir + ")\n")
	}

	if live != nil {
		srv, err := startLiveServer(a.http, live, opts.members, ids)
		if err != nil {
			for _, ln := range opts.listeners {
				_ = ln.Close()
			}
			return fail("%v", err)
		}
		defer func() {
			if err := srv.close(); err != nil {
				errOut.raw(fmt.Sprintf("threeclients: the live page stopped: %v\n", err))
			}
		}()
		out.raw("live page at " + srv.URL() + " (also /metrics and /debug/pprof/)\n")
	}

	opts.local = map[string]bool{}
	for _, id := range ids {
		opts.local[id] = true
	}
	clients := map[string]*client{}
	for i, id := range ids {
		c, err := startClient(id, opts)
		if err != nil {
			for _, rest := range ids[i+1:] {
				_ = opts.listeners[rest].Close()
			}
			for _, id := range ids[:i] {
				clients[id].quiet()
			}
			for _, id := range ids[:i] {
				clients[id].close()
			}
			return fail("client %s: %v", id, err)
		}
		clients[id] = c
	}

	out.raw(helpText + "\n")
	if len(ids) > 1 {
		waitConnected(ctx, out, ids, clients)
		out.raw("type a command in the course's syntax (\"transfer 1 2 5\": lines run one after another),\n" +
			"or start it with a client (\"2 transfer 3 1\"): it joins that client's queue alone, and clients run at the same time\n")
	}
	var lines <-chan inputLine
	if editor != nil {
		lines = editor.Lines()
	} else {
		plain := make(chan inputLine)
		go readLines(stdin, maxLine, plain) // ends with the process; a blocked read cannot be interrupted
		lines = plain
	}
	if live != nil {
		mergeCtx, stopMerge := context.WithCancel(ctx)
		defer stopMerge()
		lines = live.mergeLines(mergeCtx, lines)
	}
	newSession(ctx, opts, ids, clients).run(lines, isTerminal(stdin) && editor == nil) // the editor draws its own prompt
	return 0
}

// waitConnected waits, for a while, until every client of this process is
// connected to every peer, and says so once.
func waitConnected(ctx context.Context, out *printer, ids []string, clients map[string]*client) {
	ctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	for _, id := range ids {
		select {
		case <-clients[id].connected:
		case <-ctx.Done():
			out.raw("not every client is connected yet; transfers wait for them\n")
			return
		}
	}
	out.raw("all clients connected\n")
}

// connectWait bounds how long the clients of one process wait for each
// other before reading commands.
const connectWait = 10 * time.Second

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

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
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
