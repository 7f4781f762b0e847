package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

//go:embed web
var liveWeb embed.FS

// liveWriteWait bounds one write to a browser's feed: a browser that takes
// nothing for that long is disconnected (it reconnects and gets a
// snapshot).
const liveWriteWait = 10 * time.Second

// liveMaxCommand bounds the body of a command posted by the page.
const liveMaxCommand = 4096

// liveServer is the -http server: the live page, its feed, /metrics and
// /debug/pprof.
type liveServer struct {
	hub   *liveHub
	srv   *http.Server
	ln    net.Listener
	serve errgroup.Group // the server's goroutine
	wg    sync.WaitGroup // the feed handlers
}

// checkHTTPAddr checks -http: host:port, on loopback unless insecure (the
// page takes commands and has no login).
func checkHTTPAddr(addr string, insecure bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-http %q is not host:port: %v", addr, err)
	}
	if !insecure && !isLoopback(host) {
		return fmt.Errorf("-http %s is not on loopback: the page takes commands and has no login; give a loopback address (e.g. 127.0.0.1:8080), or -insecure", addr)
	}
	return nil
}

// startLiveServer listens on addr and serves hub's page.
func startLiveServer(addr string, hub *liveHub, members, local []string) (*liveServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-http: %w", err)
	}
	s := &liveServer{hub: hub, ln: ln}
	mux := http.NewServeMux()
	assets, _ := fs.Sub(liveWeb, "web")
	mux.Handle("/", http.FileServerFS(assets))
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/snapshot", s.snapshot)
	mux.HandleFunc("GET /api/trace", s.trace)
	mux.HandleFunc("POST /api/command", s.command)
	mux.Handle("GET /metrics", promhttp.HandlerFor(hub.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	host, _, _ := net.SplitHostPort(addr)
	s.srv = &http.Server{Handler: loopbackOnly(mux, isLoopback(host)), ReadHeaderTimeout: 10 * time.Second}
	hub.members, hub.local = members, local
	hub.begin()
	s.serve.Go(func() error {
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return s, nil
}

// loopbackOnly refuses, when the server listens on loopback, requests
// whose Host is not a loopback name or address: a page of another site
// whose name was made to resolve to 127.0.0.1 (DNS rebinding) would
// otherwise be of the same origin as this one.
func loopbackOnly(h http.Handler, onLoopback bool) http.Handler {
	if !onLoopback {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !isLoopback(strings.Trim(host, "[]")) {
			http.Error(w, "this server answers to loopback addresses only", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// URL is the page's address.
func (s *liveServer) URL() string { return "http://" + s.ln.Addr().String() + "/" }

// close ends every feed, stops the server and the hub, and waits for
// them. It returns why the server stopped serving, if it failed.
func (s *liveServer) close() error {
	s.hub.close() // the feeds return
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close()
	}
	err := s.serve.Wait()
	s.wg.Wait()
	return err
}

// events is the live feed, as server-sent events: a "snapshot" event,
// then one message per event; a browser that falls behind gets a new
// "snapshot" instead of what it missed.
func (s *liveServer) events(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	sub, snap, ok := s.hub.subscribe()
	if !ok {
		http.Error(w, "too many browsers connected, or closing", http.StatusServiceUnavailable)
		return
	}
	defer s.hub.unsubscribe(sub)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(name string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(liveWriteWait))
		if name != "" {
			if _, err := fmt.Fprintf(w, "event: %s\n", name); err != nil {
				return false
			}
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return true
	}
	if !send("snapshot", snap) || rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.hub.stop:
			return
		case <-sub.resync:
			if !send("snapshot", s.hub.resnap(sub)) || rc.Flush() != nil {
				return
			}
		case ev := <-sub.ch:
			if !send("", ev) {
				return
			}
			for n := len(sub.ch); n > 0; n-- { // what waits goes in the same flush
				if !send("", <-sub.ch) {
					return
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

func (s *liveServer) snapshot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.hub.snapshot())
}

// trace is the session as a JSON file to download: the snapshot (every
// event the hub still holds, the cards and the output).
func (s *liveServer) trace(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="threeclients-trace.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(s.hub.snapshot())
}

// liveCommand is a command posted by the page: line, typed as client.
type liveCommand struct {
	Client string `json:"client"`
	Line   string `json:"line"`
}

// command takes a line typed on the page into the same path as a line of
// standard input. It takes JSON only, from a page of this server: a form
// of another site cannot post JSON without the browser asking first, and
// its Origin would differ.
func (s *liveServer) command(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	}
	var c liveCommand
	body, err := io.ReadAll(io.LimitReader(r.Body, liveMaxCommand+1))
	if err == nil && len(body) > liveMaxCommand {
		err = errors.New("command too long")
	}
	if err == nil {
		err = json.Unmarshal(body, &c)
	}
	if err == nil {
		err = s.hub.typed(c)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// sameOrigin refuses a request whose Origin (when the browser sends one)
// is not this server.
func sameOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host != r.Host {
		return fmt.Errorf("origin %q is not this page", o)
	}
	return nil
}

// errBusy is the page's answer when liveCommands lines wait already.
var errBusy = errors.New("the clients have not taken the lines typed before: try again")

// typed queues a line typed on the page as client c.Client: with every
// client in this process it goes in front of the line, as "2 transfer 3
// 1"; with one client it must be that client.
func (h *liveHub) typed(c liveCommand) error {
	line := strings.TrimSpace(c.Line)
	switch {
	case line == "":
		return errors.New("empty command")
	case strings.ContainsAny(line, "\r\n"):
		return errors.New("one line at a time")
	case !contains(h.local, c.Client) && c.Client != "":
		return fmt.Errorf("client %s does not run in this process (here: %s)", quoteID(c.Client), strings.Join(h.local, ", "))
	}
	if c.Client != "" && len(h.local) > 1 {
		line = c.Client + " " + line
	}
	select {
	case h.commands <- line:
		return nil
	default:
		return errBusy
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// mergeLines returns the lines of in and, after them in arrival order,
// those typed on the page; it ends with in. Its goroutine ends then or
// when ctx ends.
func (h *liveHub) mergeLines(ctx context.Context, in <-chan inputLine) <-chan inputLine {
	out := make(chan inputLine)
	go func() {
		defer close(out)
		for {
			var l inputLine
			select {
			case <-ctx.Done():
				return
			case x, ok := <-in:
				if !ok {
					return
				}
				l = x
			case text := <-h.commands:
				l = inputLine{text: text}
			}
			select {
			case out <- l:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
