package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// rawOneWay measures, with no project code, the one-way latency of a small
// message on a loopback TCP connection: from the start of the sender's
// Write to the return of the receiver's Read, the receiver's goroutine
// already parked in Read, both timestamps taken in this process. The
// receiver echoes each message so that the sender sends the next one only
// after the receiver has read the last; the echo is not timed.
func rawOneWay(bud budget) (_ Sample, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Sample{}, fmt.Errorf("one-way: %w", err)
	}
	defer ln.Close()
	deadline := time.Now().Add(bud.patience())
	// arrivals carries, per message, when the receiver's Read returned; it
	// is sent after the echo, so the timed path has no channel operation.
	arrivals := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		done <- oneWayReceiver(ln, deadline, arrivals)
	}()
	defer func() {
		// The receiver stops when the sender's connection closes (deferred
		// below, so closed by now), or in Accept when ln closes.
		_ = ln.Close()
		if rerr := <-done; rerr != nil && !errors.Is(rerr, io.EOF) {
			err = errors.Join(err, rerr)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return Sample{}, fmt.Errorf("one-way: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return Sample{}, err
	}
	msg := make([]byte, rawMsgSize)
	buf := make([]byte, rawMsgSize)
	once := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return 0, fmt.Errorf("one-way: %w", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, fmt.Errorf("one-way: %w", err)
		}
		select {
		case t1 := <-arrivals:
			return t1.Sub(t0), nil
		case err := <-done:
			done <- err
			return 0, fmt.Errorf("one-way: receiver stopped: %w", err)
		}
	}
	for m := bud.warmup().start(); m.next(); {
		if _, err := once(); err != nil {
			return Sample{}, err
		}
	}
	return timeEach(bud, once)
}

// timeEach runs once for the budget's measured window and returns the
// latencies it reports as a Sample.
func timeEach(bud budget, once func() (time.Duration, error)) (Sample, error) {
	var lat []time.Duration
	start := time.Now()
	for m := bud.start(); m.next(); {
		d, err := once()
		if err != nil {
			return Sample{}, err
		}
		lat = append(lat, d)
	}
	return latencySample(lat, time.Since(start)), nil
}

// oneWayReceiver accepts one connection on ln and, for every message of
// rawMsgSize bytes, notes when its Read returned, echoes it, then sends the
// time on arrivals. It returns when the connection ends (io.EOF when the
// sender closed it).
func oneWayReceiver(ln net.Listener, deadline time.Time, arrivals chan<- time.Time) error {
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("one-way: accept: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	buf := make([]byte, rawMsgSize)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		t1 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return err
		}
		arrivals <- t1
	}
}
