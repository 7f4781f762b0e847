package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lamportledger/lamportledger/ledger"
)

// cmdQueue bounds the commands waiting for one client; the input waits
// when it is full.
const cmdQueue = 1024

// tally counts work not finished yet, and lets others wait until there is
// none.
type tally struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

func (t *tally) add() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
}

func (t *tally) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

func (t *tally) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// wait returns when nothing is counted, or with ctx's error.
func (t *tally) wait(ctx context.Context) error {
	t.mu.Lock()
	idle, n := t.idle, t.n
	t.mu.Unlock()
	if n == 0 {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit queues cmd for the client's worker, behind the commands given
// before it; c.queued counts it until it is done (an exit for every
// client is not counted).
// It waits while the queue is full; it returns false if the
// worker has stopped or ctx ended first.
func (c *client) submit(ctx context.Context, cmd command) bool {
	counted := cmd.name != "exit" || cmd.alone
	if counted {
		c.queued.add()
	}
	select {
	case c.cmds <- cmd:
		return true
	case <-c.workerDone:
	case <-ctx.Done():
	}
	if counted {
		c.queued.done()
	}
	return false
}

// work runs the client's commands one at a time, in the order given, until
// an exit command, or until the client's context ends (a signal, or exit
// given twice), which abandons what is left. Then it waits for its
// background transfers, and says so on exited; the one who started it
// closes the client.
func (c *client) work(exited chan<- *client) {
	defer func() { exited <- c }()
	defer close(c.workerDone)
	defer c.background.Wait()
	for {
		select {
		case <-c.ctx.Done():
			return
		case cmd := <-c.cmds:
			if cmd.name == "exit" {
				if cmd.alone { // gone before the next line that waits for it
					c.close()
					c.queued.done()
				}
				return
			}
			c.run(cmd)
		}
	}
}

// idle waits until t counts nothing, the worker has stopped, or ctx ends.
func (c *client) idle(ctx context.Context, t *tally) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.workerDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	_ = t.wait(ctx)
}

// run runs one command for the worker. A transfer given with & goes on in
// the background, counted in c.background and c.inBackground.
func (c *client) run(cmd command) {
	if cmd.name != "transfer" || !cmd.background {
		defer c.queued.done()
		c.execute(c.ctx, cmd)
		return
	}
	id := c.txids.take() // in the order given
	c.inBackground.add()
	c.queued.done()
	c.background.Go(func() {
		defer c.inBackground.done()
		c.transfer(id, cmd.to, cmd.amount)
	})
}

// transfer runs one transfer under ID id and prints its outcome. With
// every client in this process, the outcome waits (a little) until the
// other clients have the block, and says so: one line in place of one per
// client, in an order that does not depend on timing.
func (c *client) transfer(id ledger.TransferID, to string, amount int64) {
	c.transfers.Add(1)
	defer c.transfers.Add(-1)
	done := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		c.reportWaiting(done)
	}()
	res, err := c.submitTransfer(id, to, amount)
	close(done)
	<-reported
	if err != nil {
		now, _ := c.node.Balance(c.id)
		reason := err.Error()
		switch {
		case errors.Is(err, ledger.ErrInsufficientFunds):
			reason = fmt.Sprintf("insufficient funds: client %s has %d, needs %d", c.id, now, amount)
		case errors.Is(err, context.Canceled):
			reason = "abandoned"
		}
		c.say("transfer %s -> %s amount %d: FAILED: %s (balance before %d, after %d)",
			c.id, to, amount, reason, now, now)
		return
	}
	c.say("transfer %s -> %s amount %d: SUCCESS (balance before %d, after %d; block #%d %s%s)",
		c.id, to, amount, res.Before[c.id], res.After[c.id], res.Block.Height, res.Block.Hash.Short(), c.replicated(res.Block))
}

// submitTransfer commits the transfer. An ID the ledger already knows was
// numbered before the chain said how far this client had got (a restart
// whose store lost its last blocks, see transferIDs): the transfer is
// numbered again past the chain, and submitted again. The ledger answers
// so only for an ID in its chain, which skipPast then passes, so this
// ends.
func (c *client) submitTransfer(id ledger.TransferID, to string, amount int64) (ledger.Result, error) {
	for {
		res, err := c.node.TransferWithID(c.ctx, id, to, amount)
		if !(err == nil && res.Duplicate) && !errors.Is(err, ledger.ErrTransferIDConflict) {
			return res, err
		}
		if err := c.txids.skipPast(c.node.BlocksFrom(0)); err != nil {
			return ledger.Result{}, err
		}
		next := c.txids.take()
		c.opts.logger.Info("a transfer number was already in the chain; numbered again", "client", c.id, "was", id.String(), "now", next.String())
		id = next
	}
}

// replicated waits until the other clients of this process that are
// running have block b, for a while, and says which have it.
func (c *client) replicated(b ledger.Block) string {
	if len(c.siblings) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(c.ctx, settleTime(c.opts.delay))
	defer cancel()
	var have, lack []string
	for _, s := range c.siblings {
		if isClosed(s.gone) {
			continue
		}
		if s.node.WaitHeight(ctx, b.Height) == nil {
			have = append(have, quoteID(s.id))
		} else {
			lack = append(lack, quoteID(s.id))
		}
	}
	switch {
	case len(lack) == 0 && len(have) > 0:
		return ", now on " + listIDs("client", have)
	case len(lack) > 0:
		return ", not yet on " + listIDs("client", lack)
	}
	return ""
}

// settleTime bounds how long the program waits for a block to reach the
// other clients of this process: the time a release takes with the
// -delay, and some.
func settleTime(delay time.Duration) time.Duration {
	return 2*time.Second + 2*delay
}

// listIDs is "client 2", "clients 2 and 3", "clients 1, 2 and 3".
func listIDs(noun string, ids []string) string {
	switch len(ids) {
	case 0:
		return ""
	case 1:
		return noun + " " + ids[0]
	}
	return noun + "s " + strings.Join(ids[:len(ids)-1], ", ") + " and " + ids[len(ids)-1]
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
