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
// after every command. `go test -run TestGolden -update-golden` (or
// LAMPORT_UPDATE_GOLDEN=1) rewrites the expected output.
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
	update := *updateGolden || os.Getenv("LAMPORT_UPDATE_GOLDEN") != ""
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

// runScript runs a script and returns it with every expected output
// replaced by the actual one.
func runScript(t *testing.T, file, script string) string {
	var out strings.Builder
	var c *cluster
	var k *checker
	lines := strings.Split(strings.TrimRight(script, "\n"), "\n")
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
		var res []string
		logf := func(f string, a ...any) { res = append(res, fmt.Sprintf(f, a...)) }
		if c != nil {
			c.logf = logf
		}
		err := func() error {
			f := strings.Fields(line)
			peer := func(n int) (int, error) {
				if c == nil {
					return 0, fmt.Errorf("no cluster: start first")
				}
				if len(f) <= n {
					return 0, fmt.Errorf("missing peer")
				}
				p := c.index(f[n])
				if p < 0 {
					return 0, fmt.Errorf("unknown peer %q", f[n])
				}
				return p, nil
			}
			switch f[0] {
			case "start":
				var err error
				if c, err = newCluster(f[1:], false, true); err != nil {
					return err
				}
				k = newChecker(len(c.ids))
				c.logf = logf
				for p := range c.ids {
					for q := range c.ids {
						if len(c.links[p][q]) > 0 {
							res = append(res, c.linkString(p, q))
						}
					}
				}
				return nil
			case "settle":
				if c == nil {
					return fmt.Errorf("no cluster")
				}
				return boot(c)
			case "deliver":
				if len(f) < 2 || c == nil {
					return fmt.Errorf("usage: deliver FROM->TO [n]")
				}
				from, to, ok := strings.Cut(f[1], "->")
				p, q := c.index(from), c.index(to)
				if !ok || p < 0 || q < 0 || p == q {
					return fmt.Errorf("bad link %q", f[1])
				}
				n := 1
				if len(f) > 2 {
					var err error
					if n, err = strconv.Atoi(f[2]); err != nil {
						return err
					}
				}
				for range n {
					if err := c.deliver(p, q, 0); err != nil {
						return err
					}
					if err := k.check(c); err != nil {
						return err
					}
				}
				return nil
			case "request":
				p, err := peer(1)
				if err != nil {
					return err
				}
				return c.request(p)
			case "release", "withdraw":
				p, err := peer(1)
				if err != nil {
					return err
				}
				var payload []byte
				if f[0] == "release" {
					s, err := strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line[len("release"):]), f[1])))
					if err != nil {
						return fmt.Errorf("payload: %w", err)
					}
					payload = []byte(s)
				}
				return c.release(p, payload)
			case "restart":
				p, err := peer(1)
				if err != nil {
					return err
				}
				keep := make([]int, len(c.ids))
				drop := make([]bool, len(c.ids))
				for q := range keep {
					keep[q], drop[q] = len(c.links[p][q]), true
				}
				for _, a := range f[2:] {
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
				k.crashed(c, p)
				for q := range c.ids {
					if q != p {
						res = append(res, c.linkString(p, q), c.linkString(q, p))
					}
				}
				return nil
			case "state":
				if c == nil {
					return fmt.Errorf("no cluster")
				}
				for i, m := range c.ms {
					if len(f) < 2 || c.ids[i] == f[1] {
						res = append(res, machineString(m))
					}
				}
				return nil
			case "links":
				if c == nil {
					return fmt.Errorf("no cluster")
				}
				for p := range c.ids {
					for q := range c.ids {
						if len(c.links[p][q]) > 0 {
							res = append(res, c.linkString(p, q))
						}
					}
				}
				return nil
			}
			return fmt.Errorf("unknown command %q", f[0])
		}()
		if err == nil && c != nil {
			err = k.check(c)
		}
		if err != nil {
			t.Errorf("%s:%d: %s: %v", file, i+1, line, err)
			res = append(res, "error: "+err.Error())
		}
		out.WriteString(line + "\n----\n")
		if len(res) == 0 {
			res = []string{"ok"}
		}
		for _, r := range res {
			out.WriteString(r + "\n")
		}
		if j < len(lines) && strings.TrimSpace(lines[j]) != "" {
			out.WriteString("\n")
		}
		i = j - 1
	}
	return out.String()
}
