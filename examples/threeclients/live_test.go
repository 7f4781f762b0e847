package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// A browser that reads nothing never holds up the clients: its queue fills,
// it is marked to re-sync, and the hub goes on handing events to the
// others; the re-sync gives it a snapshot with the newest events.
func TestLiveFeedSlowBrowserResyncs(t *testing.T) {
	checkNoLeaks(t)
	h := newLiveHub()
	h.members, h.local = []string{"1", "2"}, []string{"1"}
	slow, _, ok := h.subscribe()
	if !ok {
		t.Fatal("subscribe refused")
	}
	fast, _, _ := h.subscribe()
	n := liveSubQueue + 10
	got := 0
	for i := range n {
		h.trace("1", lamportmutex.Event{Sent: true, Message: lamportmutex.Message{Kind: lamportmutex.Request, From: "1", To: "2", Clock: uint64(i + 1)}})
		h.publish(h.take())
		for len(fast.ch) > 0 {
			<-fast.ch
			got++
		}
	}
	if got != n {
		t.Errorf("the browser that reads got %d events, want %d", got, n)
	}
	if len(slow.ch) != liveSubQueue || !slow.lagged {
		t.Fatalf("the slow browser holds %d events (lagged %v), want %d and lagged", len(slow.ch), slow.lagged, liveSubQueue)
	}
	select {
	case <-slow.resync:
	default:
		t.Fatal("the slow browser was not told to re-sync")
	}
	snap := h.resnap(slow)
	if !snap.Resync || len(slow.ch) != 0 || slow.lagged {
		t.Fatalf("after the re-sync: snapshot resync %v, %d queued, lagged %v", snap.Resync, len(slow.ch), slow.lagged)
	}
	last := snap.Events[len(snap.Events)-1]
	if last.Clock != uint64(n) || snap.Seq != last.Seq {
		t.Errorf("the snapshot ends with clock %d seq %d (snapshot seq %d), want clock %d", last.Clock, last.Seq, snap.Seq, n)
	}
	h.trace("1", lamportmutex.Event{Message: lamportmutex.Message{Kind: lamportmutex.Reply, From: "2", To: "1", Clock: 99}})
	h.publish(h.take())
	if ev := <-slow.ch; ev.Seq != snap.Seq+1 {
		t.Errorf("after the snapshot the stream goes on at seq %d, want %d", ev.Seq, snap.Seq+1)
	}
	if h.resyncs != 1 {
		t.Errorf("resyncs = %d, want 1", h.resyncs)
	}
}

// The trace hook never waits: past livePending events not yet taken by the
// hub, it drops and counts them, and the next batch starts with a "lost"
// event that says how many.
func TestLiveFeedPendingBounded(t *testing.T) {
	checkNoLeaks(t)
	h := newLiveHub()
	ev := lamportmutex.Event{Sent: true, Message: lamportmutex.Message{Kind: lamportmutex.Reply, From: "1", To: "2", Clock: 1}}
	for range livePending + 7 {
		h.trace("1", ev)
	}
	evs := h.take()
	if len(evs) != livePending+1 || evs[0].Type != "lost" || evs[0].Lost != 7 {
		t.Fatalf("took %d events, the first %+v; want %d, the first lost 7", len(evs), evs[0], livePending+1)
	}
	if h.take() != nil {
		t.Error("a second take returned events")
	}
}

// The history keeps the newest liveHistory events, oldest first.
func TestLiveRing(t *testing.T) {
	r := newLiveRing(3)
	for i := range 5 {
		r.add(liveEvent{Seq: uint64(i)})
	}
	var seqs []uint64
	for _, ev := range r.all() {
		seqs = append(seqs, ev.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 2 || seqs[2] != 4 {
		t.Errorf("ring holds %v, want [2 3 4]", seqs)
	}
}

// The process's output reaches the page line by line; a line longer than
// liveOutLine is cut.
func TestLiveOutputLines(t *testing.T) {
	h := newLiveHub()
	_, _ = h.Write([]byte("one\ntw"))
	_, _ = h.Write([]byte("o\n" + strings.Repeat("x", liveOutLine+5)))
	var texts []string
	for _, ev := range h.take() {
		texts = append(texts, ev.Text)
	}
	if len(texts) != 3 || texts[0] != "one" || texts[1] != "two" || len(texts[2]) != liveOutLine {
		t.Errorf("lines %q", texts)
	}
}

// A command from the page joins the input as a line for its client; the
// server takes JSON only, from its own origin, and bounds what waits.
func TestLiveCommand(t *testing.T) {
	checkNoLeaks(t)
	h := newLiveHub()
	h.members, h.local = []string{"1", "2", "3"}, []string{"1", "2", "3"}
	s := &liveServer{hub: h}
	post := func(body, ctype, origin string) int {
		r := httptest.NewRequest("POST", "http://127.0.0.1:8080/api/command", strings.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		s.command(w, r)
		return w.Code
	}
	if c := post(`{"client":"2","line":"transfer 3 1"}`, "application/json", "http://127.0.0.1:8080"); c != http.StatusAccepted {
		t.Fatalf("status %d", c)
	}
	if line := <-h.commands; line != "2 transfer 3 1" {
		t.Errorf("line %q, want %q", line, "2 transfer 3 1")
	}
	for _, bad := range []struct{ body, ctype, origin string }{
		{`{"client":"2","line":"transfer 3 1"}`, "text/plain", ""},
		{`{"client":"2","line":"transfer 3 1"}`, "application/json", "http://evil.example"},
		{`{"client":"9","line":"transfer 3 1"}`, "application/json", ""},
		{`{"client":"2","line":"transfer 3 1\nexit"}`, "application/json", ""},
		{`{"client":"2","line":" "}`, "application/json", ""},
		{`{"client":"2","line":"` + strings.Repeat("x", liveMaxCommand) + `"}`, "application/json", ""},
	} {
		if c := post(bad.body, bad.ctype, bad.origin); c == http.StatusAccepted {
			t.Errorf("accepted %.60q (%s, origin %q)", bad.body, bad.ctype, bad.origin)
		}
	}
	for range liveCommands {
		post(`{"client":"1","line":"table"}`, "application/json", "")
	}
	if c := post(`{"client":"1","line":"table"}`, "application/json", ""); c != http.StatusBadRequest {
		t.Errorf("with %d lines waiting: status %d, want %d", liveCommands, c, http.StatusBadRequest)
	}
}

// The feed over HTTP: a snapshot first, then the events, as server-sent
// events; closing the server ends the feed.
func TestLiveFeedHTTP(t *testing.T) {
	checkNoLeaks(t)
	h := newLiveHub()
	srv, err := startLiveServer("127.0.0.1:0", h, []string{"1", "2"}, []string{"1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL()+"api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() (event, data string) {
		t.Helper()
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = l[len("event: "):]
			case strings.HasPrefix(l, "data: "):
				data = l[len("data: "):]
			case l == "" && data != "":
				return event, data
			}
		}
		t.Fatalf("the feed ended: %v", sc.Err())
		return "", ""
	}
	ev, data := next()
	var snap liveSnapshot
	if err := json.Unmarshal([]byte(data), &snap); ev != "snapshot" || err != nil || len(snap.Members) != 2 {
		t.Fatalf("first %q %s (%v)", ev, data, err)
	}
	h.trace("1", lamportmutex.Event{Sent: true, Message: lamportmutex.Message{Kind: lamportmutex.Release, From: "1", To: "2", Clock: 7}, Before: 6, Clock: 7})
	for {
		_, data = next()
		var e liveEvent
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type == "msg" {
			if e.Kind != "RELEASE" || e.Clock != 7 || e.From != "1" || e.To != "2" || !e.Sent || e.Seq != snap.Seq+1 {
				t.Errorf("event %+v", e)
			}
			break
		}
	}
}

// -http is on loopback unless -insecure: the page takes commands and has
// no login.
func TestCheckHTTPAddr(t *testing.T) {
	for _, c := range []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:8080", false, true},
		{"localhost:0", false, true},
		{"[::1]:8080", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"10.0.0.1:8080", false, false},
		{"10.0.0.1:8080", true, true},
		{"8080", false, false},
	} {
		if err := checkHTTPAddr(c.addr, c.insecure); (err == nil) != c.ok {
			t.Errorf("checkHTTPAddr(%q, insecure %v) = %v, want ok %v", c.addr, c.insecure, err, c.ok)
		}
	}
}

// On loopback, the server answers to loopback names only (no DNS
// rebinding).
func TestLiveLoopbackOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, c := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:8080", http.StatusOK},
		{"localhost:8080", http.StatusOK},
		{"[::1]:8080", http.StatusOK},
		{"evil.example:8080", http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
	} {
		r := httptest.NewRequest("GET", "/api/snapshot", nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		loopbackOnly(ok, true).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("Host %s: status %d, want %d", c.host, w.Code, c.want)
		}
	}
}

// A whole run with -http in this process: the page's server, hub and
// goroutines start with the clients and stop with them, and the output
// says where the page is.
func TestRunWithHTTP(t *testing.T) {
	checkNoLeaks(t)
	code, out, errs := runHere(t, "1 transfer 2 3\ntable\n", "-memory", "-http", "127.0.0.1:0", "-peers", allInOnePeers(t))
	if code != 0 || !strings.Contains(out, "live page at http://127.0.0.1:") || !strings.Contains(out, "balance table: 1=7 2=13 3=10") {
		t.Errorf("status %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	code, _, errs = runHere(t, "", "-memory", "-http", "10.0.0.1:8080", "-peers", allInOnePeers(t))
	if code != 1 || !strings.Contains(errs, "-http 10.0.0.1:8080 is not on loopback") {
		t.Errorf("-http off loopback: status %d, stderr:\n%s", code, errs)
	}
}
