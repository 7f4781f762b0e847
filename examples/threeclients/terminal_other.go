//go:build !unix

package main

import (
	"errors"
	"os"
)

// ttyInput is unused where the editor is not built: reads of a console
// there cannot be interrupted, so input stays in plain mode.
type ttyInput struct{ f *os.File }

func openTTYInput(*os.File, int) (ttyInput, error) {
	return ttyInput{}, errors.New("no line editor on this system")
}

func (ttyInput) interrupt() {}
func (ttyInput) close()     {}

func fdOf(f *os.File) (int, error) { return int(f.Fd()), nil }

func watchResize(func()) (stop func()) { return func() {} }
