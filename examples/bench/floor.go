package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/transport"
)

// rawMsgSize is the size of the raw floor's messages: about one DATA frame
// of the TCP transport carrying a REQUEST.
const rawMsgSize = 32

// echoServers is k loopback TCP servers that write back whatever they read.
type echoServers struct {
	lns    []net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startEchoServers(k int) (*echoServers, error) {
	s := &echoServers{}
	for range k {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("echo server: %w", err)
		}
		s.lns = append(s.lns, ln)
		s.wg.Add(1)
		go s.accept(ln)
	}
	return s, nil
}

func (s *echoServers) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.echo(c)
	}
}

func (s *echoServers) echo(c net.Conn) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// dial connects once to every server.
func (s *echoServers) dial() ([]net.Conn, error) {
	var cs []net.Conn
	for _, ln := range s.lns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			closeConns(cs)
			return nil, fmt.Errorf("dial echo server: %w", err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// close stops the servers and waits for their goroutines.
func (s *echoServers) close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.mu.Unlock()
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	closeConns(conns)
	s.wg.Wait()
}

func closeConns(cs []net.Conn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// rawFanout is a client connected to k loopback echo servers, with no
// project code.
type rawFanout struct {
	srv      *echoServers
	conns    []net.Conn
	msg, buf []byte
}

// newRawFanout starts k echo servers and connects to each; every
// connection gives up at deadline.
func newRawFanout(k int, deadline time.Time) (*rawFanout, error) {
	srv, err := startEchoServers(k)
	if err != nil {
		return nil, err
	}
	conns, err := srv.dial()
	if err != nil {
		srv.close()
		return nil, err
	}
	f := &rawFanout{srv: srv, conns: conns, msg: make([]byte, rawMsgSize), buf: make([]byte, rawMsgSize)}
	for _, c := range conns {
		if err := c.SetDeadline(deadline); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// once sends a small message on every connection, then reads every echo
// back: a ping-pong for k = 1, a fan-out-and-echo for k = N-1.
func (f *rawFanout) once() error {
	for _, c := range f.conns {
		if _, err := c.Write(f.msg); err != nil {
			return fmt.Errorf("raw round trip: %w", err)
		}
	}
	for _, c := range f.conns {
		if _, err := io.ReadFull(c, f.buf); err != nil {
			return fmt.Errorf("raw round trip: %w", err)
		}
	}
	return nil
}

func (f *rawFanout) close() {
	closeConns(f.conns)
	f.srv.close()
}

// rawRoundTrip measures, with no project code, the time to send a small
// message on k loopback TCP connections and read every echo back: a
// ping-pong for k = 1, a fan-out-and-echo for k = N-1.
func rawRoundTrip(k int, bud budget) (Sample, error) {
	f, err := newRawFanout(k, time.Now().Add(bud.patience()))
	if err != nil {
		return Sample{}, err
	}
	defer f.close()
	for m := bud.warmup().start(); m.next(); {
		if err := f.once(); err != nil {
			return Sample{}, err
		}
	}
	var lat []time.Duration
	start := time.Now()
	for m := bud.start(); m.next(); {
		t0 := time.Now()
		if err := f.once(); err != nil {
			return Sample{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	return latencySample(lat, time.Since(start)), nil
}

// tcpRoundTrip measures a ping-pong of lamportmutex messages between two
// transport.TCP endpoints on loopback.
func tcpRoundTrip(bud budget) (Sample, error) {
	tcps, err := newTCPGroup([]string{"a", "b"})
	if err != nil {
		return Sample{}, err
	}
	return transportRoundTrip(tcps[0], tcps[1], bud, func() error {
		return errors.Join(tcps[0].Close(context.Background()), tcps[1].Close(context.Background()))
	})
}

// chanRoundTrip measures a ping-pong between two ChanNetwork endpoints.
func chanRoundTrip(bud budget) (Sample, error) {
	nw, err := transport.NewChanNetwork([]string{"a", "b"}, transport.ChanOptions{})
	if err != nil {
		return Sample{}, err
	}
	a, errA := nw.Endpoint("a")
	b, errB := nw.Endpoint("b")
	if err := errors.Join(errA, errB); err != nil {
		_ = nw.Close()
		return Sample{}, err
	}
	return transportRoundTrip(a, b, bud, nw.Close)
}

// transportRoundTrip measures a ping-pong: a sends a REQUEST to b, b
// answers with a REPLY. closeAll closes both transports; it is called
// before transportRoundTrip returns, which then waits for its echo
// goroutine.
func transportRoundTrip(a, b lamportmutex.Transport, bud budget, closeAll func() error) (_ Sample, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), bud.patience())
	defer cancel()
	// b echoes every REQUEST on its delivery goroutine; a's delivery
	// goroutine hands each REPLY to the waiting round.
	if err := b.Start(func(m lamportmutex.Message) {
		if m.Kind == lamportmutex.Request {
			_ = b.Send(lamportmutex.Message{Kind: lamportmutex.Reply, From: b.ID(), To: a.ID(), Clock: m.Clock})
		}
	}); err != nil {
		return Sample{}, errors.Join(err, closeAll())
	}
	replies := make(chan uint64, 1)
	if err := a.Start(func(m lamportmutex.Message) {
		if m.Kind == lamportmutex.Reply {
			select {
			case replies <- m.Clock:
			default: // a round that gave up
			}
		}
	}); err != nil {
		return Sample{}, errors.Join(err, closeAll())
	}
	defer func() {
		err = errors.Join(err, closeAll())
		cancel()
	}()
	var clock uint64
	once := func() error {
		clock++
		if err := a.Send(lamportmutex.Message{Kind: lamportmutex.Request, From: a.ID(), To: b.ID(), Clock: clock}); err != nil {
			return err
		}
		for {
			select {
			case c := <-replies:
				if c == clock {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	for m := bud.warmup().start(); m.next(); {
		if err := once(); err != nil {
			return Sample{}, fmt.Errorf("transport round trip: %w", err)
		}
	}
	var lat []time.Duration
	start := time.Now()
	for m := bud.start(); m.next(); {
		t0 := time.Now()
		if err := once(); err != nil {
			return Sample{}, fmt.Errorf("transport round trip: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	return latencySample(lat, time.Since(start)), nil
}
