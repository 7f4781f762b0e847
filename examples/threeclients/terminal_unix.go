//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ttyInput is the file the editor reads the terminal from, and whether
// the editor opened it (and so closes it).
type ttyInput struct {
	f     *os.File
	owned bool
}

// openTTYInput returns a file that reads the terminal in (descriptor fd)
// and whose blocked read can be interrupted. That is in itself when Go
// polls it; else the process's controlling terminal opened again, which
// is in's terminal when fd is the controlling terminal. A blocking read
// of in itself could not be stopped, so any other terminal is refused.
func openTTYInput(in *os.File, fd int) (ttyInput, error) {
	if in.SetReadDeadline(time.Time{}) == nil {
		return ttyInput{f: in}, nil
	}
	if _, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil {
		return ttyInput{}, fmt.Errorf("standard input is not the controlling terminal: %w", err)
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDONLY, 0)
	if err != nil {
		return ttyInput{}, err
	}
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return ttyInput{}, fmt.Errorf("/dev/tty: %w", err)
	}
	return ttyInput{f: f, owned: true}, nil
}

// interrupt makes the blocked read, and every later one, fail at once.
func (in ttyInput) interrupt() {
	_ = in.f.SetReadDeadline(time.Unix(1, 0))
}

// close closes the file if the editor opened it, else clears the deadline
// interrupt set.
func (in ttyInput) close() {
	if in.owned {
		_ = in.f.Close()
		return
	}
	_ = in.f.SetReadDeadline(time.Time{})
}

// fdOf is f's descriptor. Unlike f.Fd it leaves a polled file non-blocking,
// so that its read deadlines keep working.
func fdOf(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return 0, err
	}
	if fd < 0 {
		return 0, errors.New("no file descriptor")
	}
	return fd, nil
}

// watchResize calls resize each time the terminal's size changes, until
// stop is called.
func watchResize(resize func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGWINCH)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ch:
				resize()
			case <-quit:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(quit)
		wg.Wait()
	}
}
