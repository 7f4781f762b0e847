package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// session reads the commands typed or piped in and hands them to the
// clients of this process.
//
// Each client runs its commands in the order given, one at a time (a
// transfer given with & goes on in the background). With every client in
// this process, a line that starts with a client ("2 transfer 3 1") joins
// that client's queue alone, so lines for different clients run at the same
// time and contend for the mutex; a line in the course's syntax
// ("transfer 1 2 5", "print balance table") first waits for every command
// given before it (& transfers aside), so a script of such lines runs one
// line after another and prints the same on every run.
//
// Two goroutines share the work: the reader (run) reads lines and handles
// what must never wait (exit given twice, a signal, the end of the input,
// clients stopping); the sequencer (sequence) carries out the other lines
// in order, waiting where a line must.
type session struct {
	ctx     context.Context    // the sequencer's: ends when everything is abandoned
	abandon context.CancelFunc // ends ctx
	signal  <-chan struct{}    // closed at a signal (Ctrl-C)
	opts    options
	ids     []string // this process's clients, in order
	clients map[string]*client
	out     *printer
	seq     chan string   // lines for the sequencer, in order
	seqDone chan struct{} // closed when the sequencer returns
	exited  chan *client  // a client's worker has stopped

	mu      sync.Mutex
	running map[string]bool // clients whose worker has not stopped
	leaving map[string]bool // clients told to exit
}

// seqQueue bounds the lines waiting for the sequencer, so at most
// seqQueue*maxLine bytes (64 MiB); the input waits when it is full.
const seqQueue = 64

func newSession(ctx context.Context, opts options, ids []string, clients map[string]*client) *session {
	s := &session{opts: opts, ids: ids, clients: clients, out: opts.out,
		seq: make(chan string, seqQueue), seqDone: make(chan struct{}), exited: make(chan *client, len(ids)),
		running: map[string]bool{}, leaving: map[string]bool{}}
	s.ctx, s.abandon = context.WithCancel(ctx)
	s.signal = ctx.Done()
	for _, id := range ids {
		c := clients[id]
		for _, other := range ids {
			if other != id {
				c.siblings = append(c.siblings, clients[other])
			}
		}
		s.running[id] = true
		go c.work(s.exited)
	}
	return s
}

func (s *session) allInOne() bool { return len(s.ids) > 1 }

// run reads lines until every client has stopped, and closes them.
func (s *session) run(lines <-chan inputLine, interactive bool) {
	go s.sequence()
	signal := s.signal
	var report <-chan time.Time // fires once while leaving takes long
	exitGiven, inputDone, seqClosed := false, false, false
	exitAlone := map[string]bool{} // "N exit" given
	closed := map[string]bool{}
	endInput := func() {
		if !exitGiven {
			exitGiven = true
			s.push("exit")
		}
		if !seqClosed {
			seqClosed = true
			close(s.seq)
		}
		if report == nil {
			report = time.After(settleTime(s.opts.delay))
		}
	}
	abandonAll := func() {
		s.quiet()
		s.abandon()
		for _, id := range s.ids {
			s.clients[id].stop()
		}
	}
	for s.runningCount() > 0 {
		if interactive && !exitGiven {
			s.out.raw("> ")
		}
		select {
		case <-signal:
			signal, lines = nil, nil
			abandonAll()
			endInput()
		case c := <-s.exited:
			s.mu.Lock()
			delete(s.running, c.id)
			s.mu.Unlock()
			closed[c.id] = isClosed(c.gone) // "N exit": it closed itself
		case in, ok := <-lines:
			switch {
			case !ok:
				lines, inputDone = nil, true
				endInput()
			case in.err != nil:
				s.errorf("%v", in.err)
			default:
				f := strings.Fields(in.text)
				who, exit := s.exitOf(f)
				switch {
				case exitGiven && exit && who == "":
					abandonAll()
				case exitGiven:
					s.errorf("%v", errLeaving)
				case exit && who == "":
					exitGiven = true
					s.push("exit")
					endInput()
				case exit && exitAlone[who]:
					s.clients[who].stop()
				case exit:
					exitAlone[who] = true
					s.push(in.text)
				default:
					s.push(in.text)
				}
			}
		case <-report:
			report = nil
			s.reportLeaving(inputDone)
		}
	}
	if !seqClosed {
		close(s.seq)
	}
	s.abandon()
	<-s.seqDone
	for _, id := range s.ids {
		if !closed[id] {
			s.clients[id].close()
		}
	}
}

// push queues a line for the sequencer.
func (s *session) push(line string) {
	select {
	case s.seq <- line:
	case <-s.ctx.Done():
	}
}

// exitOf reports whether f is an exit, and for whom: "" for every client
// of this process, or the client of "N exit" with several clients.
func (s *session) exitOf(f []string) (who string, exit bool) {
	if len(f) == 2 {
		if _, ok := s.clients[f[0]]; !ok {
			return "", false
		}
		who, f = f[0], f[1:]
	}
	if len(f) != 1 || !(strings.EqualFold(f[0], "exit") || strings.EqualFold(f[0], "quit")) {
		return "", false
	}
	if !s.allInOne() {
		who = ""
	}
	return who, true
}

// sequence carries out the lines pushed, in order, until the input ends;
// once everything is abandoned it drops what is left.
func (s *session) sequence() {
	defer close(s.seqDone)
	for line := range s.seq {
		if s.ctx.Err() != nil {
			continue
		}
		if line == "exit" {
			s.quitAll()
			continue
		}
		s.line(line)
	}
}

// errLeaving answers lines given after exit.
var errLeaving = errors.New("leaving once the commands given have finished: type exit again, or press Ctrl-C, to abandon them")

// errorf prints an error line: as the client with one client, else for the
// process.
func (s *session) errorf(format string, args ...any) {
	if !s.allInOne() {
		s.clients[s.ids[0]].say("error: "+format, args...)
		return
	}
	s.out.raw("error: " + fmt.Sprintf(format, args...) + "\n")
}

// line carries out one line of input, for the sequencer.
func (s *session) line(line string) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return
	}
	if c, ok := s.clients[f[0]]; ok {
		if len(f) == 1 {
			s.lineError(nil, fmt.Errorf("client %s: what should it do? (type help)", quoteID(f[0])))
			return
		}
		s.forClient(c, strings.Join(f[1:], " "))
		return
	}
	if isMember(f[0], s.opts.members) {
		s.lineError(nil, fmt.Errorf("this is client %s: give client %s's commands in its own terminal", quoteID(s.ids[0]), quoteID(f[0])))
		return
	}
	if _, err := strconv.ParseUint(f[0], 10, 64); err == nil { // no command is a number
		s.lineError(nil, fmt.Errorf("unknown client %q (clients: %s)", f[0], strings.Join(s.opts.members, ", ")))
		return
	}
	if !s.allInOne() {
		s.forClient(s.clients[s.ids[0]], line)
		return
	}
	s.together(line, f)
}

// lineError reports err in its place among the output of the commands
// before it: in c's queue, or with one client in its queue; else after
// every command given before it.
func (s *session) lineError(c *client, err error) {
	if c == nil && !s.allInOne() {
		c = s.clients[s.ids[0]]
	}
	if c != nil && c.submit(s.ctx, command{name: "error", err: err}) {
		return
	}
	if s.settle(false) {
		s.errorf("%v", err)
	}
}

// forClient queues a command for client c alone.
func (s *session) forClient(c *client, text string) {
	cmd, err := parseCommand(text, c.id, s.opts.members)
	s.mu.Lock()
	running, leaving := s.running[c.id], s.leaving[c.id]
	if err == nil && cmd.name == "exit" && s.allInOne() {
		s.leaving[c.id] = true
	}
	s.mu.Unlock()
	switch {
	case errors.Is(err, errEmpty):
	case !running:
		s.lineError(nil, fmt.Errorf("client %s has exited", quoteID(c.id)))
	case leaving:
		s.lineError(nil, fmt.Errorf("client %s is leaving once its commands have finished: type \"%s exit\" again to abandon them", quoteID(c.id), c.id))
	case err != nil:
		s.lineError(c, err)
	case cmd.name == "help":
		c.submit(s.ctx, command{name: "help"})
	case cmd.name == "exit" && !s.allInOne():
		s.quitAll()
	case cmd.name == "exit":
		c.submit(s.ctx, command{name: "exit", alone: true})
	default:
		c.submit(s.ctx, cmd)
	}
}

// together carries out a line in the course's syntax with every client in
// this process: it waits for the commands given before it, then a
// transfer goes to its sender, and a read is answered by every client, in
// order.
func (s *session) together(line string, f []string) {
	name := strings.ToLower(f[0])
	switch name {
	case "help":
		if s.settle(false) {
			s.out.raw(helpText + "\n")
		}
		return
	case "wait": // pauses the input; the clients go on
		cmd, err := parseCommand(line, s.ids[0], s.opts.members)
		if err != nil {
			s.lineError(nil, err)
			return
		}
		sleepCtx(s.ctx, cmd.wait)
		return
	case "transfer":
		args := f[1:]
		background := strings.HasSuffix(f[len(f)-1], "&")
		if background && f[len(f)-1] == "&" {
			args = args[:len(args)-1]
		}
		if len(args) > 0 {
			if c, ok := s.clients[args[0]]; ok && len(args) != 2 {
				if background || s.settle(false) {
					s.forClient(c, line)
				}
				return
			}
		}
		if len(args) == 2 {
			s.lineError(nil, fmt.Errorf("which client sends it? Write transfer <from> <to> <amount>, e.g. \"transfer %s %s 5\" (or start the line with the client: \"%s transfer %s 5\")",
				s.ids[0], s.ids[len(s.ids)-1], s.ids[0], s.ids[len(s.ids)-1]))
			return
		}
		s.lineError(nil, fmt.Errorf("unknown client %q (clients: %s)", f[min(1, len(f)-1)], strings.Join(s.opts.members, ", ")))
		return
	case "sync":
		if len(f) > 1 {
			s.lineError(nil, errors.New("sync takes no arguments"))
			return
		}
		s.settle(true)
		return
	}
	cmd, err := parseCommand(line, s.ids[0], s.opts.members)
	if err != nil {
		s.lineError(nil, err)
		return
	}
	if !s.settle(false) {
		return
	}
	ids := s.runningIDs()
	if cmd.name == "chain" && s.sameChain(ids) {
		s.clients[ids[0]].printChain(" (the same on " + listIDs("client", ids) + ")")
		return
	}
	for _, id := range ids {
		cmd, err := parseCommand(line, id, s.opts.members) // "balance" is each client's own
		if err != nil {
			s.lineError(nil, err)
			return
		}
		s.clients[id].execute(s.ctx, cmd)
	}
}

// settle waits until every client has finished the commands given so far
// (with all, its background transfers too), and then, for a while, until
// the running clients have handled every message and have the same chain.
// It returns false once everything is abandoned: the line is dropped.
func (s *session) settle(all bool) bool {
	for _, id := range s.ids { // those leaving too: gone before the line runs
		c := s.clients[id]
		c.idle(s.ctx, &c.queued)
		if all {
			c.idle(s.ctx, &c.inBackground)
		}
	}
	deadline := time.Now().Add(settleTime(s.opts.delay))
	last := ""
	for time.Now().Before(deadline) && s.ctx.Err() == nil {
		ids := s.runningIDs()
		now, ok := s.quietNet(ids)
		if ok && now == last && s.sameChain(ids) {
			break
		}
		last = now
		time.Sleep(5 * time.Millisecond)
	}
	return s.ctx.Err() == nil
}

// quietNet reports whether every message the running clients ids sent
// each other has been handled and no request is queued anywhere (a
// RELEASE the mutex holds back is not counted as sent until it goes, but
// the request it ends is still queued at its receivers), and describes
// their clocks and message counts, so that settle can see them unchanged
// across two looks. With a client of this process stopped it cannot tell,
// and says yes.
func (s *session) quietNet(ids []string) (string, bool) {
	if len(ids) != len(s.ids) {
		return "", true
	}
	var sent, handled uint64
	queued := false
	var sb strings.Builder
	for _, id := range ids {
		c := s.clients[id]
		queued = queued || len(c.node.LockState().Queue) > 0
		st := c.node.LockStats()
		for _, n := range st.Sent {
			sent += n
			fmt.Fprintf(&sb, "%d ", n)
		}
		for k, n := range st.Received {
			if k != lamportmutex.PeerUp { // the transport's, never sent
				handled += n
			}
		}
		handled += st.Dropped + st.Stale + st.HandlerErrors
		fmt.Fprintf(&sb, "%d;", c.clock.Load())
	}
	return fmt.Sprintf("%s %d/%d", sb.String(), handled, sent), sent == handled && !queued
}

// sameChain reports whether the clients ids have the same head block.
func (s *session) sameChain(ids []string) bool {
	for _, id := range ids[1:] {
		if s.clients[id].node.Head().Hash != s.clients[ids[0]].node.Head().Hash {
			return false
		}
	}
	return true
}

// runningIDs are the clients that have not stopped or been told to, in
// order; the first client when none is left.
func (s *session) runningIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, id := range s.ids {
		if s.running[id] && !s.leaving[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return s.ids[:1]
	}
	return ids
}

func (s *session) runningCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.running)
}

// quitAll tells every client to exit once the commands given have
// finished.
func (s *session) quitAll() {
	s.quiet()
	s.mu.Lock()
	var ids []string
	for _, id := range s.ids {
		if s.running[id] && !s.leaving[id] {
			s.leaving[id] = true
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.clients[id].submit(s.ctx, command{name: "exit"})
	}
}

// quiet stops the clients of this process reporting each other going
// down, as they all leave.
func (s *session) quiet() {
	if s.allInOne() {
		for _, id := range s.ids {
			s.clients[id].quiet()
		}
	}
}

// reportLeaving says what leaving waits for.
func (s *session) reportLeaving(inputDone bool) {
	how := "type exit again, or press Ctrl-C,"
	if inputDone {
		how = "press Ctrl-C"
	}
	for _, id := range s.ids {
		c := s.clients[id]
		if isClosed(c.workerDone) {
			continue
		}
		if n := c.queued.count() + c.inBackground.count(); n > 0 {
			c.say("exit: waiting for %d %s to finish; %s to abandon %s",
				n, plural(int64(n), "command", "commands"), how, plural(int64(n), "it", "them"))
		}
	}
}
