package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The page's cost, measured: LAMPORT_LIVE_MEASURE=N runs N transfers
// (-batch 1, so one entry of the mutex each, three clients contending)
// with no browser, with a browser that reads nothing (a stalled
// connection to the feed), and with Chromium showing the page, and logs
// transfers per second and the events per second the page took. It
// asserts no rate (the machine decides those); it asserts that every
// transfer commits while the browser is stalled, and that the stalled
// feed is cut off or re-synced rather than waited for.
func TestLiveMeasure(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LAMPORT_LIVE_MEASURE"))
	if n <= 0 {
		t.Skip("set LAMPORT_LIVE_MEASURE=N to measure the live page's cost over N transfers")
	}
	for _, mode := range []string{"none", "stalled", "browser"} {
		if mode == "browser" && findBrowser() == "" {
			t.Log("no browser: skipping the measurement with Chromium")
			continue
		}
		t.Run(mode, func(t *testing.T) { measureLive(t, mode, n) })
	}
}

func measureLive(t *testing.T, mode string, n int) {
	addrs := freePorts(t, 3)
	peers := fmt.Sprintf("1=%s,2=%s,3=%s", addrs[0], addrs[1], addrs[2])
	p := startAllInOne(t, "-memory", "-batch", "1", "-http", "127.0.0.1:0", "-peers", peers)
	url := p.expect(`^live page at (http://\S+/) `)[1]
	p.expect(`^all clients connected`)
	var pageEvents func() float64
	switch mode {
	case "stalled":
		stallFeed(t, url)
	case "browser":
		ctx := newBrowser(t, findBrowser())
		if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#card-3 .clock`))); err != nil {
			t.Fatal(err)
		}
		pageEvents = func() float64 {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.liveStats.events`))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	before := scrape(t, url)
	var page0 float64
	if pageEvents != nil {
		page0 = pageEvents()
	}
	start := time.Now()
	for i := range n {
		from := i%3 + 1
		p.send(fmt.Sprintf("%d transfer %d 1", from, from%3+1))
	}
	for range n {
		p.expect(`transfer \d -> \d amount 1: (SUCCESS|FAILED)`)
	}
	elapsed := time.Since(start)
	after := scrape(t, url)
	published := after["published"] - before["published"]
	t.Logf("%s: %d transfers in %v: %.0f transfers/s; feed: %.0f events published (%.0f/s), %.0f sent to browsers, %.0f re-syncs, %.0f lost",
		mode, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), published, published/elapsed.Seconds(),
		after["sent"]-before["sent"], after["resyncs"]-before["resyncs"], after["lost"]-before["lost"])
	if pageEvents != nil {
		// The page has taken every event once its count stops short of
		// nothing: wait until it has what was published.
		deadline := time.Now().Add(30 * time.Second)
		got := pageEvents() - page0
		for got < published && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			got = pageEvents() - page0
		}
		took := time.Since(start)
		t.Logf("%s: the page took %.0f events in %v: %.0f events/s", mode, got, took.Round(time.Millisecond), got/took.Seconds())
	}
	p.exit()
}

// stallFeed opens the live feed and never reads it.
func stallFeed(t *testing.T, base string) {
	t.Helper()
	host := base[len("http://") : len(base)-1]
	d := net.Dialer{}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET /api/events HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

// scrape returns the live feed's counters from /metrics, by "what".
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range fams["threeclients_live_events_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "what" {
				out[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}
