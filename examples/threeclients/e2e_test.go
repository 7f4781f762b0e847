package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hangGuard bounds how long the end-to-end test waits for one expected
// line. It only turns a hang into a failure with context; it is no
// performance bound, so it is generous: under -race, with other packages'
// tests beside it on 2 cores, a restarted client once took more than 30 s
// to see every peer connected again.
const hangGuard = 90 * time.Second

// buildCLI compiles the program once per test binary.
var buildCLI = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "threeclients-e2e")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "threeclients")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// proc is one running client process driven through stdin.
type proc struct {
	t      *testing.T
	id     string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	seen   []string
	stderr *syncBuffer
}

func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// startProc starts a client process. Its stderr is kept (proc.stderr) for
// failure messages, and its stdout reader ends at cleanup even when nobody
// reads its lines.
func startProc(t *testing.T, id, peers, dataDir string, extra ...string) *proc {
	t.Helper()
	p, read := startProcHeld(t, id, peers, dataDir, extra...)
	read()
	return p
}

// startProcHeld is startProc, but nobody reads the process's stdout until
// read is called.
func startProcHeld(t *testing.T, id, peers, dataDir string, extra ...string) (p *proc, read func()) {
	t.Helper()
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-peers", peers, "-data", dataDir}, extra...)
	cmd := exec.Command(bin, append(args, id)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p = &proc{t: t, id: id, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	abandon := make(chan struct{})
	readDone := make(chan struct{})
	gate := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(p.lines)
		select {
		case <-gate:
		case <-abandon:
			return
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			case <-abandon:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(abandon)
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		<-readDone
	})
	return p, sync.OnceFunc(func() { close(gate) })
}

func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("client %s: write %q: %v", p.id, line, err)
	}
}

// expect reads lines until one matches re and returns its submatches.
func (p *proc) expect(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(hangGuard)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("client %s exited while waiting for %q; output:\n%s\nstderr:\n%s", p.id, re, strings.Join(p.seen, "\n"), p.stderr)
			}
			p.seen = append(p.seen, line)
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timeout:
			p.t.Fatalf("client %s: no line matching %q; output:\n%s\nstderr:\n%s", p.id, re, strings.Join(p.seen, "\n"), p.stderr)
		}
	}
}

// chain asks for the chain and returns its text, without the client prefix.
func (p *proc) chain() (height int, text string) {
	p.t.Helper()
	p.send("chain")
	m := p.expect(`^\[` + p.id + ` @\d+\] blockchain, (\d+) blocks? after genesis`)
	height, _ = strconv.Atoi(m[1])
	var sb strings.Builder
	for range height + 1 {
		sb.WriteString(p.expect(`^  #.*`)[0] + "\n")
	}
	return height, sb.String()
}

// waitChain polls until the client's chain has height blocks.
func (p *proc) waitChain(height int) string {
	p.t.Helper()
	for {
		h, text := p.chain()
		if h == height {
			return text
		}
		if h > height {
			p.t.Fatalf("client %s has %d blocks, want %d", p.id, h, height)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) exit() {
	p.t.Helper()
	p.send("exit")
	if err := p.cmd.Wait(); err != nil {
		p.t.Fatalf("client %s: exit: %v", p.id, err)
	}
}

func TestThreeClientsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	data := t.TempDir()
	procs := map[string]*proc{}
	ids := []string{"1", "2", "3"}
	for _, id := range ids {
		procs[id] = startProc(t, id, peers, data)
	}
	for _, id := range ids {
		procs[id].expect(`all peers connected`)
	}

	// Three rounds of transfers issued at the same moment from all three
	// clients, so the mutex is contended. Each client sends at most 9 in
	// all, so every transfer succeeds whatever the order.
	committed := 0
	for round := 1; round <= 3; round++ {
		for i, id := range ids {
			procs[id].send(fmt.Sprintf("transfer %s %d", ids[(i+1)%3], round))
		}
		for i, id := range ids {
			m := procs[id].expect(`transfer ` + id + ` -> (\d) amount (\d+): (SUCCESS|FAILED)(.*)`)
			if m[1] != ids[(i+1)%3] || m[2] != strconv.Itoa(round) || m[3] != "SUCCESS" {
				t.Fatalf("client %s round %d: %q", id, round, m[0])
			}
			committed++
		}
	}
	// One that must fail, with the reason and the balance.
	procs["1"].send("transfer 2 100")
	m := procs["1"].expect(`transfer 1 -> 2 amount 100: (.*)`)
	if !strings.Contains(m[1], "FAILED: insufficient funds: client 1 has 10, needs 100 (balance before 10, after 10)") {
		t.Fatalf("overdraft: %q", m[0])
	}

	var chains []string
	for _, id := range ids {
		chains = append(chains, procs[id].waitChain(committed))
	}
	if chains[0] != chains[1] || chains[1] != chains[2] {
		t.Fatalf("chains differ:\n%s\n%s\n%s", chains[0], chains[1], chains[2])
	}
	for _, id := range ids {
		procs[id].send("table")
		m := procs[id].expect(`balance table: 1=(\d+) 2=(\d+) 3=(\d+)`)
		sum := 0
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			sum += n
		}
		if sum != 30 || m[0] != "balance table: 1=10 2=10 3=10" {
			// Every client sent and received 1+2+3.
			t.Fatalf("client %s: %q (sum %d, want 30 and 10 each)", id, m[0], sum)
		}
	}

	// Every bad line gets one clear line back, and the client keeps going.
	bad := map[string]string{
		"fly":                              `unknown command "fly"`,
		"transfer 2":                       "usage: transfer <from> <to> <amount>, or transfer <to> <amount>",
		"transfer 2 x":                     `amount "x" is not a whole number`,
		"transfer 2 0":                     "amount must be positive",
		"transfer 2 -5":                    "amount must be positive",
		"transfer 2 1e99":                  `amount "1e99" is not a whole number`,
		"transfer 2 999999999999999999999": "is too large",
		"transfer 7 1":                     `unknown client "7"`,
		"transfer 1 1":                     "cannot transfer to yourself",
		"transfer 2 3 1":                   "client 1 cannot spend client 2's money",
		"balance 9":                        `unknown client "9"`,
		"print":                            "usage: print blockchain",
	}
	for line, want := range bad {
		procs["1"].send(line)
		m := procs["1"].expect(`^\[1 @\d+\] error: (.*)`)
		if !strings.Contains(m[1], want) {
			t.Errorf("%q: got %q, want %q", line, m[1], want)
		}
	}
	procs["1"].send("balance")
	procs["1"].expect(`^\[1 @\d+\] balance of client 1: 10$`)

	// Client 2 stops and comes back on its data folder.
	procs["2"].exit()
	procs["2"] = startProc(t, "2", peers, data)
	procs["2"].expect(fmt.Sprintf(`%d blocks after genesis recovered`, committed))
	if got := procs["2"].waitChain(committed); got != chains[0] {
		t.Fatalf("restarted chain differs:\n%s\nwant\n%s", got, chains[0])
	}
	procs["2"].expect(`all peers connected`)
	procs["2"].send("transfer 3 4")
	procs["2"].expect(`transfer 2 -> 3 amount 4: SUCCESS \(balance before 10, after 6`)
	committed++
	var final []string
	for _, id := range ids {
		final = append(final, procs[id].waitChain(committed))
	}
	if final[0] != final[1] || final[1] != final[2] {
		t.Fatalf("chains differ after restart:\n%s\n%s\n%s", final[0], final[1], final[2])
	}
	for _, id := range ids {
		procs[id].exit()
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Two clients of different ledgers (here: other initial balances) refuse
// each other, and say why.
func TestThreeClientsRefuseAnotherLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two processes")
	}
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	addrs := freePorts(t, 2)
	peers := fmt.Sprintf("1=%s,2=%s", addrs[0], addrs[1])
	data := t.TempDir() // the certificates both use
	var errs [2]syncBuffer
	for i, balance := range []string{"10", "20"} {
		cmd := exec.Command(bin, "-memory", "-data", data, "-balance", balance, "-peers", peers, strconv.Itoa(i+1))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = &errs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = stdin.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	deadline := time.Now().Add(hangGuard)
	for i := range errs {
		for !strings.Contains(errs[i].String(), "cluster mismatch") {
			if time.Now().After(deadline) {
				t.Fatalf("client %d never said why the other was refused; stderr:\n%s", i+1, errs[i].String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Said once per direction, not at every reconnect attempt.
	if n := strings.Count(errs[0].String(), "cluster mismatch"); n > 4 {
		t.Errorf("client 1 repeated the refusal %d times:\n%s", n, errs[0].String())
	}
}
