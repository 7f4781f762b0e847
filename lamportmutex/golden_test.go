package lamportmutex

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the expected output of testdata/*.txt")

// TestGolden runs the data-driven scripts in testdata/*.txt, in the manner
// of etcd raft's interaction tests. A script is a sequence of commands,
// each followed by a line "----" and the expected output, ending at a blank
// line; lines starting with # are comments. The invariants are checked
// after every command. `go test -run TestGolden -update-golden` rewrites
// the expected output. Each command has one handler (goldenCommands).
//
// Commands:
//
//	start 1 2 3        fresh Machines; every link carries its first-contact PEERUP
//	settle             deliver everything, lowest link first, until quiet
//	deliver 1->2 [n]   deliver the first n (default 1) messages of link 1->2
//	request 1          peer 1 requests the lock
//	release 1 "data"   peer 1 releases the lock with a payload
//	withdraw 1         peer 1 withdraws its waiting request
//	restart 3 [keep=n] [inbound=drop|keep]
//	                   peer 3 crashes and restarts; n messages of each of its
//	                   outbound links survive (default all); its inbound
//	                   links are dropped (default) or kept
//	state [1]          the Machines (or one)
//	links              every non-empty link
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	update := *updateGolden
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := runScript(t, file, string(data))
			if update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(data) {
				t.Errorf("%s: output differs (rerun with -update-golden and inspect the diff):\n%s", file, firstDiff(string(data), got))
			}
		})
	}
}

// firstDiff shows the first differing line with context.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant: %s\ngot:  %s", i+1, wl, gl)
		}
	}
	return ""
}

// script is the state of a golden script being run.
type script struct {
	c   *cluster
	k   *checker
	res []string // the command's output
}

func (s *script) logf(f string, a ...any) { s.res = append(s.res, fmt.Sprintf(f, a...)) }

// peer returns the index of the peer named arg.
func (s *script) peer(args []string) (int, error) {
	if len(args) < 1 {
		return 0, fmt.Errorf("missing peer")
	}
	p := s.c.index(args[0])
	if p < 0 {
		return 0, fmt.Errorf("unknown peer %q", args[0])
	}
	return p, nil
}

// links prints every non-empty link.
func (s *script) links() {
	for p := range s.c.ids {
		for q := range s.c.ids {
			if len(s.c.links[p][q]) > 0 {
				s.res = append(s.res, s.c.linkString(p, q))
			}
		}
	}
}

// goldenCommand runs one command of a script: args are the line's fields
// after the command's name; rest is the line after the name.
type goldenCommand func(s *script, args []string, rest string) error

// goldenCommands is every command of the scripts (see TestGolden).
var goldenCommands = map[string]goldenCommand{
	"start":    cmdStart,
	"settle":   func(s *script, _ []string, _ string) error { return boot(s.c) },
	"deliver":  cmdDeliver,
	"request":  cmdRequest,
	"release":  cmdRelease,
	"withdraw": cmdWithdraw,
	"restart":  cmdRestart,
	"state":    cmdState,
	"links":    func(s *script, _ []string, _ string) error { s.links(); return nil },
}

func cmdStart(s *script, args []string, _ string) error {
	c, err := newCluster(args, true)
	if err != nil {
		return err
	}
	s.c, s.k = c, newChecker(len(c.ids))
	s.links()
	return nil
}

func cmdDeliver(s *script, args []string, _ string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: deliver FROM->TO [n]")
	}
	from, to, ok := strings.Cut(args[0], "->")
	p, q := s.c.index(from), s.c.index(to)
	if !ok || p < 0 || q < 0 || p == q {
		return fmt.Errorf("bad link %q", args[0])
	}
	n := 1
	if len(args) > 1 {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil {
			return err
		}
	}
	for range n {
		if err := s.c.deliver(p, q, 0); err != nil {
			return err
		}
		if err := s.k.check(s.c); err != nil {
			return err
		}
	}
	return nil
}

func cmdRequest(s *script, args []string, _ string) error {
	p, err := s.peer(args)
	if err != nil {
		return err
	}
	return s.c.request(p)
}

func cmdRelease(s *script, args []string, rest string) error {
	p, err := s.peer(args)
	if err != nil {
		return err
	}
	payload, err := strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), args[0])))
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return s.c.release(p, []byte(payload))
}

func cmdWithdraw(s *script, args []string, _ string) error {
	p, err := s.peer(args)
	if err != nil {
		return err
	}
	return s.c.release(p, nil)
}

func cmdRestart(s *script, args []string, _ string) error {
	p, err := s.peer(args)
	if err != nil {
		return err
	}
	c := s.c
	keep := make([]int, len(c.ids))
	drop := make([]bool, len(c.ids))
	for q := range keep {
		keep[q], drop[q] = len(c.links[p][q]), true
	}
	for _, a := range args[1:] {
		switch {
		case strings.HasPrefix(a, "keep="):
			n, err := strconv.Atoi(strings.TrimPrefix(a, "keep="))
			if err != nil {
				return err
			}
			for q := range keep {
				keep[q] = n
			}
		case a == "inbound=keep":
			clear(drop)
		case a == "inbound=drop":
		default:
			return fmt.Errorf("unknown option %q", a)
		}
	}
	if err := c.crash(p, keep, drop); err != nil {
		return err
	}
	s.k.crashed(c, p)
	for q := range c.ids {
		if q != p {
			s.res = append(s.res, c.linkString(p, q), c.linkString(q, p))
		}
	}
	return nil
}

func cmdState(s *script, args []string, _ string) error {
	for i, m := range s.c.ms {
		if len(args) < 1 || s.c.ids[i] == args[0] {
			s.res = append(s.res, machineString(m))
		}
	}
	return nil
}

// runScript runs a script and returns it with every expected output
// replaced by the actual one.
func runScript(t *testing.T, file, text string) string {
	var out strings.Builder
	s := &script{}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		// Skip the old expected output.
		j := i + 1
		if j < len(lines) && lines[j] == "----" {
			for j++; j < len(lines) && strings.TrimSpace(lines[j]) != ""; j++ {
			}
		}
		s.res = nil
		f := strings.Fields(line)
		cmd, ok := goldenCommands[f[0]]
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("unknown command %q", f[0])
		case s.c == nil && f[0] != "start":
			err = fmt.Errorf("no cluster: start first")
		default:
			if s.c != nil {
				s.c.logf = s.logf
			}
			err = cmd(s, f[1:], strings.TrimPrefix(line, f[0]))
			if s.c != nil {
				s.c.logf = s.logf
			}
		}
		if err == nil && s.c != nil {
			err = s.k.check(s.c)
		}
		if err != nil {
			t.Errorf("%s:%d: %s: %v", file, i+1, line, err)
			s.res = append(s.res, "error: "+err.Error())
		}
		out.WriteString(line + "\n----\n")
		if len(s.res) == 0 {
			s.res = []string{"ok"}
		}
		for _, r := range s.res {
			out.WriteString(r + "\n")
		}
		if j < len(lines) && strings.TrimSpace(lines[j]) != "" {
			out.WriteString("\n")
		}
		i = j - 1
	}
	return out.String()
}
