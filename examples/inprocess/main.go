// Command inprocess runs three ledger clients in one process over an
// in-process channel network: a burst of concurrent random transfers from
// every client, then the balance table, each client's chain head, and a check
// that the chains are identical and no money was created or lost.
//
//	go run ./examples/inprocess -count 200 -seed 7
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inprocess", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 100, "transfers each client attempts")
	seed := fs.Uint64("seed", 1, "seed for the random transfers")
	clients := fs.Int("clients", 3, "number of clients")
	balance := fs.Int64("balance", 10, "every client's initial balance")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *count < 0 || *clients < 2 || *balance <= 0 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "inprocess: need -count >= 0, -clients >= 2, -balance > 0 and no arguments")
		return 2
	}
	if err := demo(stdout, *clients, *count, *seed, *balance); err != nil {
		fmt.Fprintln(stderr, "inprocess:", err)
		return 1
	}
	return 0
}

// peer is one client: its node and its mutex.
type peer struct {
	node *ledger.Node
	mu   *lamportmutex.Mutex
}

func demo(out io.Writer, n, count int, seed uint64, balance int64) error {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	net, err := transport.NewChanNetwork(ids, transport.ChanOptions{Seed: int64(seed)})
	if err != nil {
		return err
	}
	defer net.Close()

	// Each member's signing key; the genesis holds the public halves.
	keys := make(map[string]ed25519.PublicKey, n)
	signers := make(map[string]ed25519.PrivateKey, n)
	for _, id := range ids {
		if keys[id], signers[id], err = ed25519.GenerateKey(nil); err != nil {
			return err
		}
	}
	peers := make([]peer, n)
	for i, id := range ids {
		node, err := ledger.NewNode(ledger.Config{ID: id, Members: ids, Keys: keys, Signer: signers[id], InitialBalance: balance})
		if err != nil {
			return err
		}
		ep, err := net.Endpoint(id)
		if err != nil {
			_ = node.Close()
			return err
		}
		mu, err := lamportmutex.New(node.MutexConfig(lamportmutex.Config{ID: id, Peers: ids, Transport: ep}))
		if err != nil {
			_ = node.Close()
			return err
		}
		// The node first: its committer releases the mutex before it stops.
		defer func() { _ = node.Close(); _ = mu.Close(context.Background()) }()
		if err := node.SetLocker(mu); err != nil {
			return err
		}
		peers[i] = peer{node: node, mu: mu}
	}

	// Every client fires its transfers at once; some fail for lack of funds.
	var wg sync.WaitGroup
	committed := make([]int, n)
	refused := make([]int, n)
	errs := make(chan error, n)
	for i := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			for range count {
				to := ids[(i+1+r.IntN(n-1))%n]
				_, err := peers[i].node.Transfer(context.Background(), to, 1+r.Int64N(balance))
				switch {
				case err == nil:
					committed[i]++
				case errors.Is(err, ledger.ErrInsufficientFunds):
					refused[i]++
				default:
					errs <- fmt.Errorf("client %s: %w", ids[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// The last holder's block reaches the others with its release; wait
	// until every replica has every block.
	total := 0
	for i := range committed {
		total += committed[i]
	}
	for _, p := range peers {
		if err := p.node.WaitHeight(context.Background(), uint64(total)); err != nil {
			return err
		}
	}

	for i, id := range ids {
		fmt.Fprintf(out, "client %s: %d transfers committed, %d refused for lack of funds\n", id, committed[i], refused[i])
	}
	fmt.Fprintf(out, "balance table:")
	bal := peers[0].node.Balances()
	for _, id := range ids {
		fmt.Fprintf(out, " %s=%d", id, bal[id])
	}
	fmt.Fprintln(out)
	identical := true
	head := peers[0].node.Head()
	for i, p := range peers {
		h := p.node.Head()
		fmt.Fprintf(out, "client %s: head #%d %s\n", ids[i], h.Height, h.Hash)
		if err := p.node.Verify(); err != nil {
			return fmt.Errorf("client %s: chain does not verify: %w", ids[i], err)
		}
		identical = identical && h.Hash == head.Hash
	}
	sum, _ := bal.Total()
	want := balance * int64(n)
	if !identical || sum != want {
		return fmt.Errorf("replicas disagree (identical chains: %v) or money changed (total %d, want %d)", identical, sum, want)
	}
	fmt.Fprintf(out, "all %d chains identical (%d blocks after genesis); total money %d, as at genesis\n", n, head.Height, sum)
	return nil
}
