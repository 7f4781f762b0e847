package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	members := []string{"1", "2", "3"}
	ok := []struct {
		line string
		want command
	}{
		{"transfer 2 5", command{name: "transfer", to: "2", amount: 5}},
		{"  TRANSFER 3 10 ", command{name: "transfer", to: "3", amount: 10}},
		{"transfer 1 2 5", command{name: "transfer", to: "2", amount: 5}},
		{"balance", command{name: "balance", client: "1"}},
		{"balance 3", command{name: "balance", client: "3"}},
		{"print blockchain", command{name: "chain"}},
		{"chain", command{name: "chain"}},
		{"print balance table", command{name: "table"}},
		{"table", command{name: "table"}},
		{"status", command{name: "status"}},
		{"wait 1.5", command{name: "wait", wait: 1500 * time.Millisecond}},
		{"transfer 2 5 &", command{name: "transfer", to: "2", amount: 5, background: true}},
		{"transfer 1 3 7&", command{name: "transfer", to: "3", amount: 7, background: true}},
		{"sync", command{name: "sync"}},
		{"help", command{name: "help"}},
		{"quit", command{name: "exit"}},
		{"exit", command{name: "exit"}},
	}
	for _, tc := range ok {
		got, err := parseCommand(tc.line, "1", members)
		if err != nil || got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	bad := []struct{ line, wantErr string }{
		{"fly", `unknown command "fly"`},
		{"transfer", "usage: transfer <from> <to> <amount>, or transfer <to> <amount>"},
		{"transfer 2", "usage: transfer <from> <to> <amount>, or transfer <to> <amount>"},
		{"transfer 2 5 6 7", "usage: transfer <from> <to> <amount>, or transfer <to> <amount>"},
		{"transfer &", "usage: transfer <from> <to> <amount>, or transfer <to> <amount>"},
		{"transfer 2 5 & &", "client 1 cannot spend client 2's money"},
		{"balance 2 &", "usage: balance [client]"},
		{"transfer 2 five", `amount "five" is not a whole number`},
		{"transfer 2 0", "amount must be positive, got 0"},
		{"transfer 2 -3", "amount must be positive, got -3"},
		{"transfer 2 1.5", `amount "1.5" is not a whole number`},
		{"transfer 2 99999999999999999999", "amount 99999999999999999999 is too large"},
		{"transfer 9 5", `unknown client "9"`},
		{"transfer 1 5", "cannot transfer to yourself (client 1)"},
		{"transfer 2 3 5", "client 1 cannot spend client 2's money"},
		{"transfer 7 3 5", `unknown client "7"`},
		{"balance 4", `unknown client "4"`},
		{"balance 1 2", "usage: balance [client]"},
		{"print", "usage: print blockchain"},
		{"print money", "usage: print blockchain"},
		{"status now", "status takes no arguments"},
		{"wait", "usage: wait <seconds>"},
		{"wait -1", "is not a number of seconds"},
		{"wait soon", "is not a number of seconds"},
	}
	for _, tc := range bad {
		_, err := parseCommand(tc.line, "1", members)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("parseCommand(%q) error = %v, want it to contain %q", tc.line, err, tc.wantErr)
		}
	}
	for _, line := range []string{"", "   ", "# a comment"} {
		if _, err := parseCommand(line, "1", members); !errors.Is(err, errEmpty) {
			t.Errorf("parseCommand(%q) = %v, want errEmpty", line, err)
		}
	}
}
