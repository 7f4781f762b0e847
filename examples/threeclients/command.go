package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// command is one parsed line of input.
type command struct {
	name   string // transfer, balance, chain, table, status, wait, sync, help, exit
	to     string // transfer
	amount int64  // transfer
	// background: a transfer given with "&": the client starts it and goes
	// on with its next command.
	background bool
	client     string // balance (empty: self)
	wait       time.Duration
	alone      bool  // exit: this client alone, which closes itself
	err        error // error: a bad line, printed in its place
}

// errEmpty is returned for a blank or comment line, which is ignored.
var errEmpty = errors.New("empty line")

const helpText = `commands (each client runs its commands in the order given):
  transfer <from> <to> <amount>   send money; waits for the outcome (also: transfer <to> <amount>)
  transfer ... &                  start the transfer and go on: transfers given with & contend for the mutex
  balance [client]                a balance, read locally without the mutex
  print blockchain | chain        the blockchain, newest block first
  print balance table | table     every client's balance
  status                          clock, request queue, peers and connections
  wait <seconds>                  pause (for scripts)
  sync                            wait for every transfer given so far, & ones too
  help                            this text
  exit | quit                     leave, once the commands given have finished

message kinds (shown with -trace; every line starts [client @clock], the client's Lamport clock):
  REQUEST   asks for the lock, stamped with the requester's clock; every client queues it
  REPLY     answers a REQUEST; the requester enters once it has a later message from every client
  RELEASE   leaves the lock, carrying the holder's new blocks; each client applies them first
  HELLO     a client's greeting to a peer that (re)started, with its clock; nothing counts before it
  DATA      the ledger's catch-up: chain heads, and blocks a client missed; sent on (re)connecting and
            by a client's first holder of the lock, which checks it has every block; not the algorithm's
  receive rule: clock = max(clock, message clock) + 1 (REQUEST, REPLY, RELEASE);
                clock = max(clock, message clock), no tick (HELLO); DATA leaves the clock alone
  send rule: the clock ticks once before a message goes out (once for a message to every peer)`

// parseCommand parses line for client self among members. Every error is
// one line a person can act on.
func parseCommand(line, self string, members []string) (command, error) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return command{}, errEmpty
	}
	name := strings.ToLower(f[0])
	args := f[1:]
	background := false
	if last := len(f) - 1; name == "transfer" && last > 0 && strings.HasSuffix(f[last], "&") {
		background = true
		if f[last] == "&" {
			args = args[:len(args)-1]
		} else {
			args = append(args[:len(args)-1:len(args)-1], strings.TrimSuffix(f[last], "&"))
		}
	}
	switch name {
	case "transfer":
		if len(args) == 3 {
			if args[0] != self {
				if !isMember(args[0], members) {
					return command{}, fmt.Errorf("unknown client %q (clients: %s)", args[0], strings.Join(members, ", "))
				}
				return command{}, fmt.Errorf("client %s cannot spend client %s's money", self, args[0])
			}
			args = args[1:]
		}
		if len(args) != 2 {
			return command{}, errors.New("usage: transfer <from> <to> <amount>, or transfer <to> <amount>; & at the end runs it in the background")
		}
		to := args[0]
		if !isMember(to, members) {
			return command{}, fmt.Errorf("unknown client %q (clients: %s)", to, strings.Join(members, ", "))
		}
		if to == self {
			return command{}, fmt.Errorf("cannot transfer to yourself (client %s)", self)
		}
		amount, err := parseAmount(args[1])
		if err != nil {
			return command{}, err
		}
		return command{name: "transfer", to: to, amount: amount, background: background}, nil
	case "balance":
		switch len(args) {
		case 0:
			return command{name: "balance", client: self}, nil
		case 1:
			if !isMember(args[0], members) {
				return command{}, fmt.Errorf("unknown client %q (clients: %s)", args[0], strings.Join(members, ", "))
			}
			return command{name: "balance", client: args[0]}, nil
		}
		return command{}, errors.New("usage: balance [client]")
	case "print":
		switch strings.ToLower(strings.Join(args, " ")) {
		case "blockchain":
			return command{name: "chain"}, nil
		case "balance table":
			return command{name: "table"}, nil
		}
		return command{}, errors.New("usage: print blockchain | print balance table")
	case "chain", "blockchain", "table", "status", "sync", "help", "exit", "quit":
		if len(args) != 0 {
			return command{}, fmt.Errorf("%s takes no arguments", name)
		}
		switch name {
		case "blockchain":
			name = "chain"
		case "quit":
			name = "exit"
		}
		return command{name: name}, nil
	case "wait":
		if len(args) != 1 {
			return command{}, errors.New("usage: wait <seconds>")
		}
		s, err := strconv.ParseFloat(args[0], 64)
		if err != nil || s < 0 || s > 3600 || math.IsNaN(s) {
			return command{}, fmt.Errorf("wait: %q is not a number of seconds between 0 and 3600", args[0])
		}
		return command{name: "wait", wait: time.Duration(s * float64(time.Second))}, nil
	}
	return command{}, fmt.Errorf("unknown command %q (type help)", f[0])
}

// parseAmount accepts a positive whole number that fits in int64.
func parseAmount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("amount %s is too large", s)
	case err != nil:
		return 0, fmt.Errorf("amount %q is not a whole number", s)
	case n <= 0:
		return 0, fmt.Errorf("amount must be positive, got %d", n)
	}
	return n, nil
}

func isMember(id string, members []string) bool {
	for _, m := range members {
		if m == id {
			return true
		}
	}
	return false
}
