package main

import (
	"context"
	"fmt"
	"strings"
)

// execute runs one parsed command and returns when it is done; a transfer
// given with & is the worker's (see run).
func (c *client) execute(ctx context.Context, cmd command) {
	switch cmd.name {
	case "transfer":
		c.transfer(c.txids.take(), cmd.to, cmd.amount)
	case "balance":
		b, err := c.node.Balance(cmd.client)
		if err != nil {
			c.say("error: %v", err)
			return
		}
		c.say("balance of client %s: %d", cmd.client, b)
	case "chain":
		c.printChain("")
	case "table":
		bal := c.node.Balances()
		var sb strings.Builder
		fmt.Fprintf(&sb, "balance table:")
		for _, id := range c.opts.members {
			fmt.Fprintf(&sb, " %s=%d", id, bal[id])
		}
		c.say("%s", sb.String())
	case "status":
		c.printStatus(ctx)
	case "wait":
		sleepCtx(ctx, cmd.wait)
	case "sync":
		_ = c.inBackground.wait(ctx)
	case "help":
		c.out.raw(helpText + "\n")
	case "error":
		c.say("error: %v", cmd.err)
	}
}

// printChain prints the chain, newest block first; where, if not empty,
// says which clients it is the chain of.
func (c *client) printChain(where string) {
	blocks := c.node.Blocks()
	var sb strings.Builder
	fmt.Fprintf(&sb, "blockchain%s, %d %s after genesis, newest first:", where, len(blocks)-1, plural(int64(len(blocks)-1), "block", "blocks"))
	for i := len(blocks) - 1; i >= 1; i-- {
		b := blocks[i]
		fmt.Fprintf(&sb, "\n  #%d %s prev %s: %s -> %s amount %d, request clock %d",
			b.Height, b.Hash.Short(), b.Prev.Short(), b.Transfer.From, b.Transfer.To, b.Transfer.Amount, b.Clock)
	}
	g := blocks[0]
	fmt.Fprintf(&sb, "\n  #0 %s genesis: %d clients, %d each", g.Hash.Short(), len(c.opts.members), c.opts.balance)
	c.say("%s", sb.String())
}

func (c *client) printStatus(ctx context.Context) {
	st := c.node.LockState()
	if err := c.node.Err(); err != nil {
		c.say("error: %v", err)
		return
	}
	var q []string
	for _, t := range st.Queue {
		q = append(q, t.String())
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "clock %d, holding %v, request queue [%s]", st.Clock, st.Held, strings.Join(q, " "))
	if len(st.Missing) > 0 {
		fmt.Fprintf(&sb, ", waiting for %s", strings.Join(st.Missing, ", "))
	}
	for _, p := range c.tcp.Status() {
		state := "not connected"
		if p.Connected && p.Inbound {
			state = "connected"
		} else if p.Connected || p.Inbound {
			state = "half connected"
		}
		fmt.Fprintf(&sb, "\n  peer %s at %s: %s, messages sent %d, received %d, reconnects %d",
			p.ID, p.Addr, state, p.MsgsSent, p.MsgsReceived, p.Reconnects)
	}
	c.say("%s", sb.String())
}
