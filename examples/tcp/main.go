// Command tcp is examples/inprocess over TCP loopback, one port per client. The
// peers are not authenticated here: see TCPConfig.TLS, and examples/threeclients.
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/lamportledger/lamportledger/ledger"
	"github.com/lamportledger/lamportledger/transport"
)

func main() {
	count := flag.Int("count", 100, "transfers each client attempts")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *count); err != nil {
		fmt.Fprintln(os.Stderr, "tcp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, count int) (err error) {
	ids := []string{"1", "2", "3"}
	keys, signers := map[string]ed25519.PublicKey{}, map[string]ed25519.PrivateKey{}
	listeners, addrs := map[string]net.Listener{}, map[string]string{}
	for _, id := range ids {
		keys[id], signers[id], _ = ed25519.GenerateKey(nil)
		if listeners[id], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		addrs[id] = listeners[id].Addr().String()
	}
	genesis, _ := ledger.NewGenesis(ids, 10, keys) // the ledger: members, balances, keys
	var nodes []*ledger.Node
	for _, id := range ids {
		tr, err := transport.NewTCP(transport.TCPConfig{ID: id, Listener: listeners[id], Peers: addrs, Cluster: genesis.Hash.String()})
		if err != nil {
			return err
		}
		node, err := ledger.NewNode(ledger.Config{ID: id, Genesis: genesis, Signer: signers[id]}, tr)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, node.Close(ctx)) }()
		nodes = append(nodes, node)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, node := range nodes {
		g.Go(func() error {
			for range count {
				if _, err := node.Transfer(gctx, ids[(i+1+rand.IntN(2))%3], 1+rand.Int64N(10)); err != nil &&
					!errors.Is(err, ledger.ErrInsufficientFunds) {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	top := max(nodes[0].Head().Height, nodes[1].Head().Height, nodes[2].Head().Height)
	for _, node := range nodes { // the last holder's block reaches the others with its release
		if err := node.WaitHeight(ctx, top); err != nil {
			return err
		}
		fmt.Fprintf(out, "client %s: %v head #%d %s\n", node.ID(), node.Balances(), top, node.Head().Hash.Short())
	}
	return nil
}
