package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
type session struct {
	ctx     context.Context
	opts    options
	ids     []string // this process's clients, in order
	clients map[string]*client
	out     *printer
	// exited receives a client when its worker stops; running holds the
	// clients whose worker has not.
	exited  chan *client
	running map[string]bool
	// leaving holds the clients told to exit; quitting is set once every
	// client is (exit, the end of the input, or a signal).
	leaving  map[string]bool
	quitting bool
	closed   map[string]bool
}

// errLeaving answers lines given after exit.
var errLeaving = errors.New("leaving once the commands given have finished: type exit again, or press Ctrl-C, to abandon them")

func newSession(ctx context.Context, opts options, ids []string, clients map[string]*client) *session {
	s := &session{ctx: ctx, opts: opts, ids: ids, clients: clients, out: opts.out,
		exited: make(chan *client, len(ids)), running: map[string]bool{}, leaving: map[string]bool{}, closed: map[string]bool{}}
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
	done := s.ctx.Done()
	var report <-chan time.Time // fires once while leaving takes long
	for len(s.running) > 0 {
		if interactive && !s.quitting {
			s.out.raw("> ")
		}
		select {
		case <-done:
			done, lines = nil, nil
			s.out.raw("\n")
			s.quitAll()
			s.abandon(s.ids...)
		case c := <-s.exited:
			delete(s.running, c.id)
			if !s.quitting {
				s.close(c.id) // "N exit": the others go on
			}
		case in, ok := <-lines:
			switch {
			case !ok:
				lines = nil
				if !s.quitting {
					s.quitAll()
					report = time.After(settleTime(s.opts.delay))
				}
			case in.err != nil:
				s.out.raw("error: " + in.err.Error() + "\n")
			default:
				if err := s.line(in.text); err != nil {
					s.out.raw("error: " + err.Error() + "\n")
				}
				if s.quitting && report == nil {
					report = time.After(settleTime(s.opts.delay))
				}
			}
		case <-report:
			report = nil
			s.reportLeaving()
		}
	}
	for _, id := range s.ids {
		s.close(id)
	}
}

// close closes client id, once.
func (s *session) close(id string) {
	if !s.closed[id] {
		s.closed[id] = true
		s.clients[id].close()
	}
}

// line carries out one line of input.
func (s *session) line(line string) error {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return nil
	}
	if s.quitting {
		if isExit(f) {
			s.abandon(s.ids...)
			return nil
		}
		return errLeaving
	}
	if c, ok := s.clients[f[0]]; ok {
		if len(f) == 1 {
			return fmt.Errorf("client %s: what should it do? (type help)", quoteID(f[0]))
		}
		return s.forClient(c, strings.Join(f[1:], " "))
	}
	if isMember(f[0], s.opts.members) {
		return fmt.Errorf("this is client %s: give client %s's commands in its own terminal", quoteID(s.ids[0]), quoteID(f[0]))
	}
	if !s.allInOne() {
		return s.forClient(s.clients[s.ids[0]], line)
	}
	return s.together(line, f)
}

// forClient queues a command for client c alone.
func (s *session) forClient(c *client, text string) error {
	cmd, err := parseCommand(text, c.id, s.opts.members)
	switch {
	case errors.Is(err, errEmpty):
		return nil
	case err != nil:
		c.say("error: %v", err)
		return nil
	case cmd.name == "help":
		s.out.raw(helpText + "\n")
		return nil
	case cmd.name == "exit" && !s.allInOne():
		s.quitAll()
		return nil
	case cmd.name == "exit" && s.leaving[c.id]:
		s.abandon(c.id)
		return nil
	case !s.running[c.id]:
		return fmt.Errorf("client %s has exited", quoteID(c.id))
	case s.leaving[c.id]:
		return fmt.Errorf("client %s is leaving once its commands have finished: type \"%s exit\" again to abandon them", quoteID(c.id), c.id)
	case cmd.name == "exit":
		s.leaving[c.id] = true
		c.submit(s.ctx, cmd)
		return nil
	}
	c.submit(s.ctx, cmd)
	return nil
}

// together carries out a line in the course's syntax with every client in
// this process: it waits for the commands given before it, then a
// transfer goes to its sender, and a read is answered by every client, in
// order.
func (s *session) together(line string, f []string) error {
	name := strings.ToLower(f[0])
	switch name {
	case "help":
		s.out.raw(helpText + "\n")
		return nil
	case "exit", "quit":
		if len(f) > 1 {
			return fmt.Errorf("%s takes no arguments", name)
		}
		s.quitAll()
		return nil
	case "wait": // pauses the input; the clients go on
		cmd, err := parseCommand(line, s.ids[0], s.opts.members)
		if err != nil {
			return err
		}
		sleepCtx(s.ctx, cmd.wait)
		return nil
	case "transfer":
		args := f[1:]
		background := strings.HasSuffix(f[len(f)-1], "&")
		if background && f[len(f)-1] == "&" {
			args = args[:len(args)-1]
		}
		if len(args) != 3 {
			return fmt.Errorf("which client sends it? Write transfer <from> <to> <amount>, e.g. \"transfer %s %s 5\" (or start the line with the client: \"%s transfer %s 5\")",
				s.ids[0], s.ids[len(s.ids)-1], s.ids[0], s.ids[len(s.ids)-1])
		}
		c, ok := s.clients[args[0]]
		if !ok {
			return fmt.Errorf("unknown client %q (clients: %s)", args[0], strings.Join(s.opts.members, ", "))
		}
		if !background {
			s.settle(false)
		}
		return s.forClient(c, line)
	case "sync":
		if len(f) > 1 {
			return errors.New("sync takes no arguments")
		}
		s.settle(true)
		return nil
	}
	cmd, err := parseCommand(line, s.ids[0], s.opts.members)
	if err != nil {
		return err
	}
	s.settle(false)
	if cmd.name == "chain" && s.sameChain() {
		s.clients[s.ids[0]].printChain(" (the same on " + listIDs("client", s.runningIDs()) + ")")
		return nil
	}
	for _, id := range s.runningIDs() {
		cmd, err := parseCommand(line, id, s.opts.members) // "balance" is each client's own
		if err != nil {
			return err
		}
		s.clients[id].execute(s.ctx, cmd)
	}
	return nil
}

// settle waits until every client has finished the commands given so far
// (with all, its background transfers too), and then, for a while, until
// the running clients have the same chain.
func (s *session) settle(all bool) {
	for _, id := range s.runningIDs() {
		c := s.clients[id]
		_ = c.queued.wait(s.ctx)
		if all {
			_ = c.inBackground.wait(s.ctx)
		}
	}
	deadline := time.Now().Add(settleTime(s.opts.delay))
	last := ""
	for time.Now().Before(deadline) && s.ctx.Err() == nil {
		now, ok := s.quiet()
		if ok && now == last && s.sameChain() {
			return
		}
		last = now
		time.Sleep(5 * time.Millisecond)
	}
}

// quiet reports whether every message the running clients sent each
// other has been handled, and describes their clocks and message counts,
// so that settle can see them unchanged across two looks. With a client
// closed it cannot tell, and says yes.
func (s *session) quiet() (string, bool) {
	var sent, handled uint64
	var sb strings.Builder
	for _, id := range s.ids {
		if s.closed[id] {
			return "", true
		}
		c := s.clients[id]
		st := c.mu.Stats()
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
	return fmt.Sprintf("%s %d/%d", sb.String(), handled, sent), sent == handled
}

// sameChain reports whether the running clients have the same head block.
func (s *session) sameChain() bool {
	ids := s.runningIDs()
	for _, id := range ids[1:] {
		if s.clients[id].node.Head().Hash != s.clients[ids[0]].node.Head().Hash {
			return false
		}
	}
	return true
}

func (s *session) runningIDs() []string {
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

// quitAll tells every client to exit once the commands given have
// finished. With several clients, none reports the others going down.
func (s *session) quitAll() {
	s.quitting = true
	for _, id := range s.ids {
		if s.running[id] && s.allInOne() {
			s.clients[id].quiet()
		}
	}
	for _, id := range s.ids {
		if s.running[id] && !s.leaving[id] {
			s.leaving[id] = true
			s.clients[id].submit(s.ctx, command{name: "exit"})
		}
	}
}

// abandon makes the clients give up the commands still waiting.
func (s *session) abandon(ids ...string) {
	for _, id := range ids {
		s.clients[id].stop()
	}
}

// reportLeaving says what leaving waits for.
func (s *session) reportLeaving() {
	for _, id := range s.ids {
		if !s.running[id] {
			continue
		}
		c := s.clients[id]
		n := c.queued.count() + c.inBackground.count()
		if n > 0 {
			c.say("exit: waiting for %d %s to finish; type exit again, or press Ctrl-C, to abandon %s",
				n, plural(int64(n), "command", "commands"), plural(int64(n), "it", "them"))
		}
	}
}

func isExit(f []string) bool {
	if len(f) == 2 {
		f = f[1:] // "2 exit"
	}
	return len(f) == 1 && (strings.EqualFold(f[0], "exit") || strings.EqualFold(f[0], "quit"))
}
