package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// browserWait bounds how long the browser test waits for the page to show
// something. Like hangGuard, it turns a hang into a failure with context.
const browserWait = 2 * time.Minute

// findBrowser returns a Chromium or Chrome binary, or "" when there is
// none; CHROME_PATH names one explicitly.
func findBrowser() string {
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startAllInOne starts every client in one process, driven through stdin.
func startAllInOne(t *testing.T, args ...string) *proc {
	t.Helper()
	bin, err := buildCLI()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, id: "all", cmd: cmd, stdin: stdin, lines: make(chan string, 1<<16), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody reads: the test has failed already
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		<-readDone
	})
	return p
}

// outputDir is where the test keeps its screenshot: the test's artifact
// directory where the toolchain has one (go test -artifacts keeps it),
// else a temporary one.
func outputDir(t *testing.T) string {
	if a, ok := any(t).(interface{ ArtifactDir() string }); ok {
		return a.ArtifactDir()
	}
	return t.TempDir()
}

// The page, in a real browser: three clients in one process with -http,
// transfers typed on stdin and in the page's form while -delay keeps them
// contending. The DOM must show the queues in (clock, id) order with the
// head marked, an arrow for every REQUEST, REPLY and RELEASE the -trace
// output says was sent, labelled with its clock, and the chains and
// balance tables the clients print; /metrics must parse and count what
// happened.
func TestLivePageInBrowser(t *testing.T) {
	browser := findBrowser()
	if browser == "" && os.Getenv("LAMPORT_REQUIRE_BROWSER") != "" {
		t.Fatal("LAMPORT_REQUIRE_BROWSER is set (.ci/run sets it) and no chromium or chrome binary is found")
	}
	if browser == "" {
		t.Skip("no chromium or chrome binary found (set CHROME_PATH, or apt-get install chromium; .ci/run installs it): the live page's browser test does not run")
	}
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	delay := "300ms"
	if d := os.Getenv("LAMPORT_LIVE_DELAY"); d != "" { // e.g. 1s, for the README's screenshot
		delay = d
	}
	p := startAllInOne(t, "-memory", "-trace", "-delay", delay, "-http", "127.0.0.1:0", "-peers", peers)
	url := p.expect(`^live page at (http://\S+/) `)[1]
	p.expect(`^all clients connected`)

	ctx := newBrowser(t, browser)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		actx, cancel := context.WithTimeout(ctx, browserWait)
		defer cancel()
		if err := chromedp.Do(actx, actions...); err != nil {
			t.Fatalf("browser: %s: %v\nprocess output:\n%s", what, err, strings.Join(p.seen, "\n"))
		}
	}
	run("open the page", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#card-3 .clock`)))

	// Three transfers at once: two typed on stdin, one in the page's form.
	p.send("1 transfer 2 3")
	p.send("2 transfer 3 2")
	// The form clears its line once the server took the command, and
	// shows the server's refusal otherwise (say, the client list was not
	// filled in yet when the test chose client 3): then it tries again.
	for attempt := 1; ; attempt++ {
		var outcome string
		run("type a transfer as client 3",
			chromedp.SetValue(chromedp.CSS(`#cmd-client`), "3"),
			chromedp.SetValue(chromedp.CSS(`#cmd-line`), "transfer 1 4"),
			chromedp.Click(chromedp.CSS(`#command button`)),
			waitJS(`(() => { const e = document.getElementById('cmd-error').textContent;
				return e !== '' ? 'refused: ' + e : document.getElementById('cmd-line').value === '' ? 'taken' : null; })()`, &outcome))
		if outcome == "taken" {
			break
		}
		if attempt == 3 {
			t.Fatalf("the page's command form: %s", outcome)
		}
		t.Logf("the page's command form, attempt %d: %s", attempt, outcome)
	}

	// While they contend, some queue holds two requests or more.
	var queues [][]queueItem
	run("a queue of two", waitJS(`(() => {
		const qs = [...document.querySelectorAll('.card')].map(c => [...c.querySelectorAll('ol.queue li')].map(li =>
			({clock: +li.dataset.clock, id: li.dataset.id, head: li.classList.contains('head')})));
		return qs.some(q => q.length >= 2) ? qs : null; })()`, &queues))
	for i, q := range queues {
		checkQueue(t, i, q)
	}
	shot := filepath.Join(outputDir(t), "live-page.png")
	var png []byte
	run("screenshot", into(chromedp.FullScreenshot(100), &png))
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page during a contended transfer: %s", shot)
	if dst := os.Getenv("LAMPORT_LIVE_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for range 3 {
		p.expect(`transfer \d -> \d amount \d: SUCCESS`)
	}
	chains, tables := printedState(p)
	checkPageState(t, run, chains, tables)
	checkArrows(t, run, p.seen)
	checkMetrics(t, url)
	checkExport(t, run)

	// A client that leaves is marked down on the page.
	p.send("3 exit")
	run("client 3 marked down", chromedp.WaitVisible(chromedp.CSS(`#card-3 .marker.down`)))
	p.exit()
}

// checkExport checks that the exported SVG is an SVG document with the
// diagram's arrows and its own style.
func checkExport(t *testing.T, run func(string, ...chromedp.Action[chromedp.Void])) {
	t.Helper()
	var res struct {
		Root   string `json:"root"`
		Arrows int    `json:"arrows"`
		Page   int    `json:"page"`
		Style  bool   `json:"style"`
	}
	run("export the SVG", waitJS(`(() => {
		const doc = new DOMParser().parseFromString(window.exportSVG(), 'image/svg+xml');
		const hidden = ['HELLO', 'DATA'].filter(k => !document.getElementById('show-' + k).checked);
		const page = [...document.querySelectorAll('#diagram g.arrow')].filter(g => !hidden.includes(g.dataset.kind)).length;
		return {root: doc.documentElement.nodeName, arrows: doc.querySelectorAll('g.arrow').length, page, style: !!doc.querySelector('style')}; })()`, &res))
	if res.Root != "svg" || res.Arrows == 0 || res.Arrows != res.Page || !res.Style {
		t.Errorf("exported SVG: %+v", res)
	}
}

func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1500, 950),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// waitJS polls expr until it returns something other than null, into out.
func waitJS[T any](expr string, out *T) chromedp.Action[chromedp.Void] {
	return into(chromedp.Poll[T](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(browserWait)), out)
}

// into runs a and keeps its value in out.
func into[T any](a chromedp.Action[T], out *T) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		v, err := a(ctx, t)
		*out = v
		return err
	})
}

type queueItem struct {
	Clock uint64 `json:"clock"`
	ID    string `json:"id"`
	Head  bool   `json:"head"`
}

// checkQueue checks that a queue on the page is in (clock, id) order with
// its first entry, and only that, marked as the head.
func checkQueue(t *testing.T, card int, q []queueItem) {
	t.Helper()
	for i, it := range q {
		if it.Head != (i == 0) {
			t.Errorf("card %d: queue %v: entry %d head=%v", card, q, i, it.Head)
		}
		if i > 0 {
			prev := q[i-1]
			if prev.Clock > it.Clock || prev.Clock == it.Clock && prev.ID >= it.ID {
				t.Errorf("card %d: queue %v is not in (clock, id) order", card, q)
			}
		}
	}
}

// printedState asks the clients for their chains and balance tables and
// returns them as printed, by client.
func printedState(p *proc) (chains map[string][]string, tables map[string]string) {
	p.t.Helper()
	chains, tables = map[string][]string{}, map[string]string{}
	for _, id := range []string{"1", "2", "3"} {
		p.send(id + " chain")
		m := p.expect(`^\[` + id + ` @\d+\] blockchain, (\d+) blocks? after genesis`)
		n, _ := strconv.Atoi(m[1])
		for range n + 1 {
			chains[id] = append(chains[id], p.expect(`^  (#.*)$`)[1])
		}
		p.send(id + " table")
		tables[id] = p.expect(`^\[` + id + ` @\d+\] balance table: (.*)$`)[1]
	}
	return chains, tables
}

type pageCard struct {
	ID       string            `json:"id"`
	Chain    []string          `json:"chain"`
	Genesis  string            `json:"genesis"`
	Balances map[string]string `json:"balances"`
}

// checkPageState waits until every card shows the chain the client
// printed, then compares the chains and the balance tables.
func checkPageState(t *testing.T, run func(string, ...chromedp.Action[chromedp.Void]), chains map[string][]string, tables map[string]string) {
	t.Helper()
	want := len(chains["1"]) - 1
	var cards []pageCard
	run("the chains on the page", waitJS(fmt.Sprintf(`(() => {
		const cards = [...document.querySelectorAll('.card')].map(c => ({
			id: c.dataset.id,
			chain: [...c.querySelectorAll('ol.chain li')].filter(li => li.dataset.height !== '0').map(li => { const d = li.dataset;
				return '#' + d.height + ' ' + d.hash + ' prev ' + d.prev + ': ' + d.from + ' -> ' + d.to + ' amount ' + d.amount + ', request clock ' + d.clock; }),
			genesis: (c.querySelector('ol.chain li[data-height="0"]') || {dataset: {}}).dataset.hash || '',
			balances: Object.fromEntries([...c.querySelectorAll('table.balances tr')].map(tr => [tr.dataset.id, tr.querySelector('.amount').textContent])),
		}));
		return cards.length === 3 && cards.every(c => c.chain.length === %d) ? cards : null; })()`, want), &cards))
	for _, c := range cards {
		printed := chains[c.ID]
		if len(printed) == 0 {
			t.Errorf("card %q: no client printed a chain", c.ID)
			continue
		}
		page := append(slices.Clone(c.Chain), "#0 "+c.Genesis+" genesis")
		gen := printed[len(printed)-1]
		if i := strings.Index(gen, " genesis"); i >= 0 {
			printed = append(slices.Clone(printed[:len(printed)-1]), gen[:i+len(" genesis")])
		}
		if !slices.Equal(page, printed) {
			t.Errorf("client %s: the page shows the chain\n%s\nthe client printed\n%s", c.ID, strings.Join(page, "\n"), strings.Join(printed, "\n"))
		}
		var bal []string
		for _, id := range []string{"1", "2", "3"} {
			bal = append(bal, id+"="+c.Balances[id])
		}
		if got := strings.Join(bal, " "); got != tables[c.ID] {
			t.Errorf("client %s: the page shows balances %s, the client printed %s", c.ID, got, tables[c.ID])
		}
	}
}

var traceSent = regexp.MustCompile(`^\[(\S+) @\d+\] \S+ sent (REQUEST|REPLY|RELEASE)@(\d+) to (\S+)`)

// checkArrows compares the arrows on the page with the messages the
// -trace output says were sent: every one an arrow that arrived, from its
// sender to its receiver, labelled kind@clock.
func checkArrows(t *testing.T, run func(string, ...chromedp.Action[chromedp.Void]), output []string) {
	t.Helper()
	var want []string
	for _, l := range output {
		if m := traceSent.FindStringSubmatch(l); m != nil {
			want = append(want, fmt.Sprintf("%s>%s %s@%s", m[1], m[4], m[2], m[3]))
		}
	}
	slices.Sort(want)
	if len(want) < 3*4 {
		t.Fatalf("the trace shows %d messages of the algorithm, want at least %d", len(want), 3*4)
	}
	var got []string
	run("the arrows on the page", waitJS(fmt.Sprintf(`(() => {
		const a = [...document.querySelectorAll('#diagram g.arrow')].filter(g => ['REQUEST','REPLY','RELEASE'].includes(g.dataset.kind));
		const done = a.filter(g => g.dataset.state === 'done');
		if (done.length < %d || done.length !== a.length) return null;
		return done.map(g => g.dataset.from + '>' + g.dataset.to + ' ' + g.querySelector('text').textContent); })()`, len(want)), &got))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("arrows on the page:\n%s\nmessages sent per the trace:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkMetrics scrapes /metrics, parses it with the Prometheus text parser
// and checks what three transfers leave there.
func checkMetrics(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	sum := func(name string, match map[string]string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("/metrics has no %s", name)
		}
		total := 0.0
		for _, m := range f.Metric {
			if !labelsMatch(m, match) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
		return total
	}
	checks := []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"ledger_transfers_total", map[string]string{"outcome": "success"}, 3},
		{"lamport_lock_wait_seconds", nil, 3},
		{"lamport_lock_hold_seconds", nil, 3},
		{"ledger_commit_batch_blocks", nil, 3},
		{"lamport_mutex_entries_total", nil, 3},
		{"ledger_chain_height", map[string]string{"client": "2"}, 3},
		{"transport_peer_connected", nil, 6},
		{"lamport_messages_sent_total", map[string]string{"kind": "REQUEST"}, 6},
		{"lamport_peer_events_total", map[string]string{"event": "up"}, 6},
	}
	for _, c := range checks {
		if got := sum(c.name, c.match); got != c.want {
			t.Errorf("/metrics: %s%v = %v, want %v", c.name, c.match, got, c.want)
		}
	}
	// Every client stores the three blocks; how many appends that takes
	// depends on how they batch, at least one per client.
	if got := sum("ledger_store_append_seconds", nil); got < 3 {
		t.Errorf("/metrics: ledger_store_append_seconds counts %v appends, want at least 3", got)
	}
	for _, path := range []string{"debug/pprof/", "api/trace"} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %s", path, r.Status)
		}
	}
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.Label {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
