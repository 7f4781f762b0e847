//go:build unix

package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The kill test: three client processes on loopback do concurrent
// transfers while one of them, again and again, is killed with SIGKILL and
// restarted on its data folder, or, in the lost-data mode, on an empty one
// from which it fetches the whole chain from its peers. At the end every
// transfer reported as SUCCESS must be in every chain, the chains must be
// identical and linked, and money must be conserved.
const (
	// killSoakEnv sets the number of kills (default killDefault).
	killSoakEnv = "LAMPORT_KILL_SOAK"
	// killSeedEnv replays a run's random choices (victims, kill moments,
	// transfers; the processes' interleaving is not reproducible).
	killSeedEnv = "LAMPORT_KILL_SEED"

	killDefault     = 20
	killBalance     = 1_000_000
	killOutstanding = 3 // transfers in flight per client
	killProgress    = 3 // SUCCESS lines cluster-wide after a restart before the next kill

	// killStallGuard turns a stall (nothing that the test waits for
	// happens) into a failure with context. It is no performance bound:
	// every step it guards normally takes well under a second.
	killStallGuard = time.Minute
)

var (
	killSuccessRx = regexp.MustCompile(`^\[(\w+) @\d+\] transfer (\w+) -> (\w+) amount (\d+): SUCCESS \(balance before -?\d+, after -?\d+; block #(\d+) ([0-9a-f]{8})\)$`)
	killFailedRx  = regexp.MustCompile(`^\[(\w+) @\d+\] transfer (\w+) -> (\w+) amount (\d+): FAILED: (.*)$`)
	killInsertRx  = regexp.MustCompile(`^\[\w+ @\d+\] block #(\d+) ([0-9a-f]{8}) from client (\w+) inserted`)
	killRecoverRx = regexp.MustCompile(`^\[\w+ @\d+\] ledger .* blocks after genesis recovered, head #(\d+) ([0-9a-f]{8})`)
	killChainRx   = regexp.MustCompile(`^  #(\d+) ([0-9a-f]{8}) prev ([0-9a-f]{8}): (\w+) -> (\w+) amount (\d+), request clock (\d+)$`)
	killGenesisRx = regexp.MustCompile(`^  #0 ([0-9a-f]{8}) genesis`)
)

// killMode is the moment at which a victim is killed.
type killMode int

const (
	killWaiting     killMode = iota // right after it was sent a transfer: likely waiting for or holding the lock
	killOwnSuccess                  // as it reports a SUCCESS: its release and block may be in flight
	killPeerSuccess                 // as a peer reports a SUCCESS: that block may be in flight to the victim
	killIdle                        // with nothing of its own in flight
	// killLostData: idle, and once every peer has shown the victim's
	// newest block (so nothing it has exists only on its disk); then its
	// data folder is deleted and it restarts empty.
	killLostData
	killModes
)

func (m killMode) String() string {
	return [...]string{"waiting", "own-success", "peer-success", "idle", "lost-data"}[m]
}

// killSuccess is one transfer a client reported as committed.
type killSuccess struct {
	client string
	inc    int
	to     string
	amount int64
	height int
	hash   string
	line   string
}

// killClient is one client and its successive processes.
type killClient struct {
	id   string
	dir  string
	incs []*incarnation // the last one is current
	log  []string       // tail of stdout over every incarnation

	// blocks holds, by height, the hash of every block its processes have
	// shown on stdout since its data folder was last created: blocks in
	// its ledger file. Guarded by killRig.mu.
	blocks map[int]string
}

// incarnation is one process of a client. Fields after ctl are guarded by
// killRig.mu.
type incarnation struct {
	n       int
	p       *proc
	stderr  *syncBuffer
	started time.Time
	done    chan struct{} // closed when its driver returns
	ctl     chan killCtl  // to its driver

	sent, outcomes int
	successes      int
	height         int // highest block it is known to have
	connected      bool
	killed         killMode
	killedByUs     bool
	exited         bool // stdout closed
	target         int  // its peers' height when it started
	recovered      int  // head height read from its data folder; -1 until it says
	caughtUp       time.Time
	stopped        string // "LEDGER STOPPED" text, if any
}

// killCtl asks a driver to do something and closes reply when done.
type killCtl struct {
	op    string // "send", "pause", "stop"
	reply chan struct{}
}

// killTrigger kills victim when a SUCCESS line from a client that matches
// it is observed.
type killTrigger struct {
	victim *incarnation
	own    bool // the victim's own SUCCESS (else a peer's)
}

// killRig is the cluster under test.
type killRig struct {
	t     *testing.T
	peers string
	certs string // the -tls folder every client shares; it outlives their data
	ids   []string
	seed  uint64
	rng   *rand.Rand // test goroutine only
	quit  chan struct{}
	wg    sync.WaitGroup
	kick  chan struct{} // poked on every change; the test goroutine waits on it

	mu        sync.Mutex
	clients   map[string]*killClient
	successes []killSuccess
	failed    []string
	hashAt    map[int]map[string]string // height -> hash -> first witness
	failure   string                    // first fatal observation
	trigger   *killTrigger
	kills     [killModes]int
}

func TestThreeClientsSurviveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes and kills them")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) }) // runs after every other cleanup
	began := time.Now()

	kills := killDefault
	if s := os.Getenv(killSoakEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("%s=%q: want a number of kills", killSoakEnv, s)
		}
		kills = n
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(killSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want a number", killSeedEnv, s)
		}
		seed = n
	}
	t.Logf("seed %d (replay the choices with %s=%d), %d kills", seed, killSeedEnv, seed, kills)
	if _, err := buildCLI(); err != nil {
		t.Fatal(err)
	}

	addrs := freePorts(t, 3)
	r := &killRig{
		t:       t,
		peers:   fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2]),
		ids:     []string{"1", "2", "3"},
		seed:    seed,
		rng:     rand.New(rand.NewPCG(seed, 0x6b696c6c)),
		quit:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		clients: map[string]*killClient{},
		hashAt:  map[int]map[string]string{},
	}
	r.certs = makeCertsDir(t, r.peers)
	t.Cleanup(func() {
		close(r.quit)
		r.mu.Lock()
		for _, c := range r.clients {
			if inc := c.incs[len(c.incs)-1]; !inc.exited {
				_ = inc.p.cmd.Process.Kill()
			}
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	for _, id := range r.ids {
		r.clients[id] = &killClient{id: id, dir: t.TempDir(), blocks: map[int]string{}}
		r.start(id)
	}
	r.waitFor("every client connected to its peers and committing", func() bool {
		for _, c := range r.clients {
			inc := c.incs[len(c.incs)-1]
			if !inc.connected || inc.successes == 0 {
				return false
			}
		}
		return true
	})

	var longest, longestLost time.Duration
	var longestWhat, longestLostWhat string
	for k := 1; k <= kills; k++ {
		victim := r.ids[r.rng.IntN(len(r.ids))]
		mode := killMode(r.rng.IntN(int(killModes)))
		inc := r.current(victim)
		t.Logf("kill %d: client %s (incarnation %d) %s", k, victim, inc.n, mode)
		r.kill(inc, mode)

		mark := r.successCount()
		next := r.start(victim)
		r.waitFor(fmt.Sprintf("client %s (incarnation %d) to catch up and commit again after kill %d (%s), with %d SUCCESS cluster-wide",
			victim, next.n, k, mode, killProgress), func() bool {
			return next.successes > 0 && !next.caughtUp.IsZero() && len(r.successes)-mark >= killProgress
		})
		r.mu.Lock()
		if mode == killLostData && next.recovered != 0 {
			r.mu.Unlock()
			r.t.Fatalf("client %s (incarnation %d) recovered head #%d from a data folder that was deleted\n%s",
				victim, next.n, next.recovered, r.report())
		}
		d := next.caughtUp.Sub(next.started)
		what := fmt.Sprintf("client %s after kill %d (%s), to height %d", victim, k, mode, next.target)
		if d > longest {
			longest, longestWhat = d, what
		}
		if mode == killLostData && d > longestLost {
			longestLost, longestLostWhat = d, what
		}
		r.mu.Unlock()
	}

	// Stop the load and wait until every transfer sent has its outcome.
	var replies []chan struct{}
	for _, id := range r.ids {
		replies = append(replies, r.control(r.current(id), "stop"))
	}
	for i, reply := range replies {
		r.waitFor("client "+r.ids[i]+" to report the outcome of every transfer sent", closed(reply))
	}
	stopped := time.Now()
	chain := r.converge()
	converged := time.Since(stopped)
	blocks := r.check(chain)
	for _, id := range r.ids {
		r.current(id).p.exit()
	}

	lost := "none"
	if longestLostWhat != "" {
		lost = fmt.Sprintf("%v (%s, the whole chain fetched)", longestLost.Round(time.Millisecond), longestLostWhat)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("survived %d kills (%s); %d transfers reported SUCCESS, %d FAILED; %d blocks checked in 3 identical chains; "+
		"longest catch-up after a restart %v (%s); longest after a lost-data restart %s; converged %v after the load stopped; wall time %v",
		kills, r.killCounts(), len(r.successes), len(r.failed), blocks,
		longest.Round(time.Millisecond), longestWhat, lost, converged.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	for _, f := range r.failed {
		t.Logf("FAILED outcome: %s", f)
	}
}

// start runs a new process for client id on its data folder, and its
// driver.
func (r *killRig) start(id string) *incarnation {
	r.t.Helper()
	c := r.clients[id]
	p := startProc(r.t, id, r.peers, c.dir, "-balance", strconv.Itoa(killBalance), "-tls", r.certs)
	stderr := p.stderr
	r.mu.Lock()
	inc := &incarnation{n: len(c.incs) + 1, p: p, stderr: stderr, started: time.Now(),
		done: make(chan struct{}), ctl: make(chan killCtl), recovered: -1}
	for _, o := range r.clients {
		if o.id != id && len(o.incs) > 0 {
			inc.target = max(inc.target, o.incs[len(o.incs)-1].height)
		}
	}
	c.incs = append(c.incs, inc)
	c.log = append(c.log, fmt.Sprintf("--- incarnation %d started; peers at height %d", inc.n, inc.target))
	r.mu.Unlock()
	rng := rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64()))
	r.wg.Add(1)
	go r.drive(c, inc, rng)
	return inc
}

// drive keeps up to killOutstanding transfers in flight on inc and
// observes its output, until its stdout closes, it is told to stop (then
// it returns once every transfer has its outcome, and the test reads
// inc.p.lines itself), or the test ends.
func (r *killRig) drive(c *killClient, inc *incarnation, rng *rand.Rand) {
	defer r.wg.Done()
	defer r.poke()
	defer close(inc.done)
	paused, stopping, dead := false, false, false
	var idle, stop chan struct{}
	for {
		if !paused && !stopping {
			for !dead && r.outstanding(inc) < killOutstanding {
				dead = !r.send(c, inc, rng)
			}
		}
		if idle != nil && r.outstanding(inc) == 0 {
			close(idle)
			idle = nil
			r.poke()
		}
		if stopping && r.outstanding(inc) == 0 {
			close(stop)
			return
		}
		select {
		case line, ok := <-inc.p.lines:
			if !ok {
				r.ended(c, inc)
				return
			}
			r.observe(c, inc, line)
		case m := <-inc.ctl:
			switch m.op {
			case "send":
				if !dead {
					dead = !r.send(c, inc, rng)
				}
				close(m.reply)
			case "pause":
				paused, idle = true, m.reply
			case "stop":
				stopping, stop = true, m.reply
			}
			r.poke()
		case <-r.quit:
			return
		}
	}
}

// send writes one transfer to a random peer; false if the process is gone.
func (r *killRig) send(c *killClient, inc *incarnation, rng *rand.Rand) bool {
	var to string
	for to == "" || to == c.id {
		to = r.ids[rng.IntN(len(r.ids))]
	}
	r.mu.Lock()
	inc.sent++
	r.mu.Unlock()
	_, err := io.WriteString(inc.p.stdin, fmt.Sprintf("transfer %s %d\n", to, 1+rng.IntN(9)))
	return err == nil
}

func (r *killRig) outstanding(inc *incarnation) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return inc.sent - inc.outcomes
}

// observe records what one line of inc's output says.
func (r *killRig) observe(c *killClient, inc *incarnation, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.poke()
	if !strings.HasPrefix(line, "[") && strings.Contains(helpText, line) {
		return // the help text every process prints at start
	}
	c.log = append(c.log, fmt.Sprintf("%d| %s", inc.n, line))
	if len(c.log) > 400 {
		c.log = slices.Delete(c.log, 0, 200)
	}
	witness := fmt.Sprintf("client %s (incarnation %d): %q", c.id, inc.n, line)
	switch {
	case killSuccessRx.MatchString(line):
		m := killSuccessRx.FindStringSubmatch(line)
		amount, _ := strconv.ParseInt(m[4], 10, 64)
		h, _ := strconv.Atoi(m[5])
		inc.outcomes++
		inc.successes++
		r.successes = append(r.successes, killSuccess{client: m[1], inc: inc.n, to: m[3], amount: amount, height: h, hash: m[6], line: line})
		r.sawBlock(c, inc, h, m[6], witness)
		if tr := r.trigger; tr != nil && (tr.victim == inc) == tr.own {
			r.killLocked(tr.victim)
		}
	case killFailedRx.MatchString(line):
		inc.outcomes++
		r.failed = append(r.failed, fmt.Sprintf("client %s (incarnation %d): %s", c.id, inc.n, line))
	case killInsertRx.MatchString(line):
		m := killInsertRx.FindStringSubmatch(line)
		h, _ := strconv.Atoi(m[1])
		r.sawBlock(c, inc, h, m[2], witness)
	case killRecoverRx.MatchString(line):
		m := killRecoverRx.FindStringSubmatch(line)
		h, _ := strconv.Atoi(m[1])
		inc.recovered = h
		r.sawBlock(c, inc, h, m[2], witness)
	case strings.Contains(line, "all peers connected"):
		inc.connected = true
	case strings.Contains(line, "LEDGER STOPPED"):
		inc.stopped = line
		r.fail("client %s (incarnation %d) stopped its ledger: %s", c.id, inc.n, line)
	}
	if inc.caughtUp.IsZero() && inc.height >= inc.target {
		inc.caughtUp = time.Now()
	}
}

// sawBlock notes that inc, a process of c, has block hash at height h,
// and fails on a second hash at one height: two replicas that differ
// there.
func (r *killRig) sawBlock(c *killClient, inc *incarnation, h int, hash, witness string) {
	inc.height = max(inc.height, h)
	if h == 0 {
		return
	}
	c.blocks[h] = hash
	at := r.hashAt[h]
	if at == nil {
		at = map[string]string{}
		r.hashAt[h] = at
	}
	if _, ok := at[hash]; !ok {
		at[hash] = witness
	}
	if len(at) > 1 {
		var ws []string
		for hsh, w := range at {
			ws = append(ws, fmt.Sprintf("  %s first seen by %s", hsh, w))
		}
		slices.Sort(ws)
		r.fail("replicas differ at height %d:\n%s", h, strings.Join(ws, "\n"))
	}
}

// ended notes that inc's stdout closed; unless the test killed it, that
// is a failure.
func (r *killRig) ended(c *killClient, inc *incarnation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inc.exited = true
	c.log = append(c.log, fmt.Sprintf("--- incarnation %d: stdout closed", inc.n))
	if !inc.killedByUs {
		r.fail("client %s (incarnation %d) exited by itself", c.id, inc.n)
	}
}

// fail records the first fatal observation; the test goroutine reports
// it. Called with r.mu held.
func (r *killRig) fail(format string, args ...any) {
	if r.failure == "" {
		r.failure = fmt.Sprintf(format, args...)
	}
}

func (r *killRig) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *killRig) current(id string) *incarnation {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.clients[id]
	return c.incs[len(c.incs)-1]
}

func (r *killRig) successCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.successes)
}

// waitFor waits until cond (called with r.mu held) holds, failing the
// test with the cluster's state on a fatal observation or a stall.
func (r *killRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	guard := time.NewTimer(killStallGuard)
	defer guard.Stop()
	for {
		r.mu.Lock()
		ok, failure := cond(), r.failure
		r.mu.Unlock()
		if failure != "" {
			r.t.Fatalf("%s\n(while waiting for %s)\n%s", failure, what, r.report())
		}
		if ok {
			return
		}
		select {
		case <-r.kick:
		case <-guard.C:
			r.t.Fatalf("nothing happened for %v while waiting for %s\n%s", killStallGuard, what, r.report())
		}
	}
}

// closed returns a waitFor condition that holds once ch is closed.
func closed(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// control sends op to inc's driver and returns the channel it closes when
// done (closed at once if the driver has ended).
func (r *killRig) control(inc *incarnation, op string) chan struct{} {
	reply := make(chan struct{})
	select {
	case inc.ctl <- killCtl{op: op, reply: reply}:
	case <-inc.done:
		close(reply)
	}
	return reply
}

// kill kills inc at the moment mode says, waits for its stdout to close
// and reaps it.
func (r *killRig) kill(inc *incarnation, mode killMode) {
	r.t.Helper()
	what := fmt.Sprintf("client %s (incarnation %d) to die (%s)", inc.p.id, inc.n, mode)
	switch mode {
	case killWaiting:
		r.waitFor(what+": one more transfer sent", closed(r.control(inc, "send")))
		time.Sleep(time.Duration(r.rng.IntN(15_000)) * time.Microsecond) // randomizes the moment only
		r.mu.Lock()
		r.killLocked(inc)
		r.mu.Unlock()
	case killIdle:
		r.waitFor(what+": its transfers done", closed(r.control(inc, "pause")))
		time.Sleep(time.Duration(r.rng.IntN(15_000)) * time.Microsecond)
		r.mu.Lock()
		r.killLocked(inc)
		r.mu.Unlock()
	case killLostData:
		r.waitFor(what+": its transfers done", closed(r.control(inc, "pause")))
		time.Sleep(time.Duration(r.rng.IntN(15_000)) * time.Microsecond) // randomizes the moment only
		c := r.clients[inc.p.id]
		r.waitFor(what+": every peer showing its newest block", func() bool {
			if !r.peersHave(c, inc) {
				return false
			}
			r.killLocked(inc) // at once, before another block can reach it
			return true
		})
	case killOwnSuccess, killPeerSuccess:
		r.mu.Lock()
		r.trigger = &killTrigger{victim: inc, own: mode == killOwnSuccess}
		r.mu.Unlock()
	}
	r.waitFor(what, func() bool { return inc.exited })
	r.mu.Lock()
	r.trigger = nil
	inc.killed = mode
	r.kills[mode]++
	r.mu.Unlock()
	err := inc.p.cmd.Wait()
	ws, ok := inc.p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		r.t.Fatalf("client %s (incarnation %d) ended with %v, not by our SIGKILL\n%s", inc.p.id, inc.n, err, r.report())
	}
	if mode == killLostData {
		r.loseData(inc.p.id)
	}
}

// peersHave reports whether every peer of c has shown inc's newest
// block, the head of c's chain as far as its output tells (inc is idle,
// so any block it has not shown yet came from a live peer). Called with
// r.mu held.
func (r *killRig) peersHave(c *killClient, inc *incarnation) bool {
	h := inc.height
	if h == 0 {
		return true
	}
	hash := c.blocks[h]
	for _, o := range r.clients {
		if o != c && o.blocks[h] != hash {
			return false
		}
	}
	return true
}

// loseData deletes the data folder of client id, whose process is dead.
func (r *killRig) loseData(id string) {
	r.t.Helper()
	c := r.clients[id]
	file := filepath.Join(c.dir, "client-"+id+".log")
	if _, err := os.Stat(file); err != nil {
		r.t.Fatalf("client %s's ledger file, about to be deleted: %v", id, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		r.t.Fatalf("deleting client %s's data folder: %v", id, err)
	}
	r.mu.Lock()
	inc := c.incs[len(c.incs)-1]
	clear(c.blocks)
	c.log = append(c.log, "--- data folder "+c.dir+" deleted")
	r.mu.Unlock()
	r.t.Logf("  client %s killed idle at head #%d, which every peer had shown; data folder deleted", id, inc.height)
}

// killLocked sends SIGKILL to inc once. Called with r.mu held.
func (r *killRig) killLocked(inc *incarnation) {
	if inc.killedByUs {
		return
	}
	inc.killedByUs = true
	_ = inc.p.cmd.Process.Signal(syscall.SIGKILL)
}

// converge polls every client's chain until all have the same height, and
// returns that chain; identical heights with different text is a fork.
func (r *killRig) converge() string {
	r.t.Helper()
	guard := time.Now().Add(killStallGuard)
	for {
		heights := map[string]int{}
		texts := map[string]string{}
		for _, id := range r.ids {
			p := r.current(id).p
			heights[id], texts[id] = p.chain()
			for _, line := range p.seen {
				if strings.Contains(line, "LEDGER STOPPED") {
					r.t.Fatalf("client %s stopped its ledger: %s\n%s", id, line, r.reportFinal(heights))
				}
			}
		}
		h1 := heights[r.ids[0]]
		same := true
		for _, id := range r.ids[1:] {
			same = same && heights[id] == h1
		}
		if same {
			for _, id := range r.ids[1:] {
				if texts[id] != texts[r.ids[0]] {
					r.t.Fatalf("clients %s and %s both have %d blocks but differ: %s\n%s",
						r.ids[0], id, h1, firstDiff(texts[r.ids[0]], texts[id]), r.reportFinal(heights))
				}
			}
			return texts[r.ids[0]]
		}
		if time.Now().After(guard) {
			r.t.Fatalf("heights did not converge within %v after the load stopped: %v\n%s", killStallGuard, heights, r.reportFinal(heights))
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronization
	}
}

// firstDiff names the first line where two chain texts differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("first difference:\n  %s\nvs\n  %s", strings.TrimSpace(la[i]), strings.TrimSpace(lb[i]))
		}
	}
	return "one is a prefix of the other"
}

// killBlock is one block as the chain command prints it.
type killBlock struct {
	hash, prev, from, to string
	amount               int64
	clock                uint64
}

// check verifies the final chain text (links, clocks, replayed balances
// against every client's table) and that every SUCCESS is in it; it
// returns the number of blocks checked.
func (r *killRig) check(chain string) int {
	r.t.Helper()
	lines := strings.Split(strings.TrimRight(chain, "\n"), "\n")
	blocks := map[int]killBlock{}
	var genesis string
	for i, line := range lines {
		want := len(lines) - 1 - i // newest first
		if want == 0 {
			m := killGenesisRx.FindStringSubmatch(line)
			if m == nil {
				r.t.Fatalf("chain line %q: want the genesis", line)
			}
			genesis = m[1]
			continue
		}
		m := killChainRx.FindStringSubmatch(line)
		if m == nil {
			r.t.Fatalf("chain line %q: not a block", line)
		}
		h, _ := strconv.Atoi(m[1])
		if h != want {
			r.t.Fatalf("chain line %q: height %d, want %d", line, h, want)
		}
		amount, _ := strconv.ParseInt(m[6], 10, 64)
		clock, _ := strconv.ParseUint(m[7], 10, 64)
		blocks[h] = killBlock{hash: m[2], prev: m[3], from: m[4], to: m[5], amount: amount, clock: clock}
	}
	height := len(lines) - 1
	balances := map[string]int64{}
	for _, id := range r.ids {
		balances[id] = killBalance
	}
	for h := 1; h <= height; h++ {
		b := blocks[h]
		prev := genesis
		if h > 1 {
			prev = blocks[h-1].hash
			// The CLI restarts a client's clock above its chain's head, so
			// block clocks never go back.
			if b.clock < blocks[h-1].clock {
				r.t.Errorf("block #%d %s has clock %d, below block #%d's %d", h, b.hash, b.clock, h-1, blocks[h-1].clock)
			}
		}
		if b.prev != prev {
			r.t.Fatalf("block #%d %s links to %s, want %s", h, b.hash, b.prev, prev)
		}
		balances[b.from] -= b.amount
		balances[b.to] += b.amount
	}
	var sum int64
	want := "balance table:"
	for _, id := range r.ids {
		if balances[id] < 0 {
			r.t.Errorf("client %s's balance replayed from the chain is %d", id, balances[id])
		}
		sum += balances[id]
		want += fmt.Sprintf(" %s=%d", id, balances[id])
	}
	if sum != int64(len(r.ids))*killBalance {
		r.t.Errorf("balances replayed from the chain sum to %d, want %d", sum, len(r.ids)*killBalance)
	}
	for _, id := range r.ids {
		p := r.current(id).p
		p.send("table")
		if got := p.expect(`balance table: .*`)[0]; got != want {
			r.t.Errorf("client %s: %q, want %q (replayed from the chain; money is conserved when they agree)", id, got, want)
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int]string{}
	for _, s := range r.successes {
		b, ok := blocks[s.height]
		switch {
		case !ok:
			r.t.Errorf("lost: client %s (incarnation %d) reported %q, but the chains end at #%d", s.client, s.inc, s.line, height)
		case b.hash != s.hash || b.from != s.client || b.to != s.to || b.amount != s.amount:
			r.t.Errorf("lost: client %s (incarnation %d) reported %q, but block #%d is %s: %s -> %s amount %d",
				s.client, s.inc, s.line, s.height, b.hash, b.from, b.to, b.amount)
		case seen[s.height] != "":
			r.t.Errorf("block #%d reported twice as SUCCESS: %q and %q", s.height, seen[s.height], s.line)
		}
		seen[s.height] = s.line
	}
	return height
}

// report describes every client for a failure message: incarnations,
// transfers in flight, heights and the tails of stdout and stderr.
func (r *killRig) report() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "seed %d (%s=%d); kills so far: %s; %d SUCCESS, %d FAILED\n", r.seed, killSeedEnv, r.seed, r.killCounts(), len(r.successes), len(r.failed))
	for _, id := range r.ids {
		c := r.clients[id]
		inc := c.incs[len(c.incs)-1]
		state := "running"
		switch {
		case inc.exited && inc.killedByUs:
			state = "killed (" + inc.killed.String() + ")"
		case inc.exited:
			state = "EXITED BY ITSELF"
		}
		if inc.stopped != "" {
			state += ", LEDGER STOPPED"
		}
		fmt.Fprintf(&sb, "client %s: incarnation %d %s, started %v ago; height >= %d (peers were at %d when it started; caught up: %v); "+
			"transfers sent %d, outcomes %d (SUCCESS %d); all peers connected: %v\n",
			id, inc.n, state, time.Since(inc.started).Round(time.Millisecond), inc.height, inc.target, !inc.caughtUp.IsZero(),
			inc.sent, inc.outcomes, inc.successes, inc.connected)
		fmt.Fprintf(&sb, "  stdout tail (incarnation| line):\n%s", indentTail(c.log, 30))
		for _, i := range c.incs[max(0, len(c.incs)-2):] {
			fmt.Fprintf(&sb, "  stderr tail of incarnation %d:\n%s", i.n, indentTail(strings.Split(strings.TrimRight(i.stderr.String(), "\n"), "\n"), 15))
		}
	}
	return sb.String()
}

// reportFinal is report after the drivers ended: heights as last queried
// and the output the test goroutine itself read.
func (r *killRig) reportFinal(heights map[string]int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "heights by the chain command: %v\n", heights)
	for _, id := range r.ids {
		p := r.current(id).p
		var tail []string
		for _, l := range p.seen {
			if !strings.HasPrefix(l, "  #") && !strings.Contains(l, "blockchain, ") {
				tail = append(tail, l)
			}
		}
		fmt.Fprintf(&sb, "client %s output since the load stopped (chain listings left out):\n%s", id, indentTail(tail, 20))
	}
	return sb.String() + r.report()
}

// killCounts says how many kills of each mode were done. Called with r.mu
// held.
func (r *killRig) killCounts() string {
	var modes []string
	for m, n := range r.kills {
		modes = append(modes, fmt.Sprintf("%s %d", killMode(m), n))
	}
	return strings.Join(modes, ", ")
}

func indentTail(lines []string, n int) string {
	var sb strings.Builder
	for _, l := range lines[max(0, len(lines)-n):] {
		sb.WriteString("    " + l + "\n")
	}
	return sb.String()
}
