// Package lamportledger is the root of the LamportLedger module: Lamport's
// distributed mutual exclusion algorithm as an embeddable library, and a
// replicated ledger of transfers built on it.
//
// The module holds no code of its own at the root; it is a map:
//
//   - [github.com/lamportledger/lamportledger/lamportmutex]: the algorithm.
//     Machine is the pure, deterministic state machine (Lamport clock,
//     request queue ordered by (clock, peer id), REQUEST / REPLY / RELEASE);
//     Mutex drives a Machine over a Transport and offers Lock, TryLock,
//     Unlock (with a payload every peer handles before the release takes
//     effect there), Close, fencing tokens and Stats; Ricart-Agrawala is an
//     option (Config.Algorithm). Transport is the
//     interface, with its whole contract: reliable, per-pair FIFO, no
//     duplicates, PeerUp on a peer's new incarnation.
//   - [github.com/lamportledger/lamportledger/transport]: two Transports.
//     ChanNetwork is an in-process network (every message still goes
//     through the wire codec) with seeded delay, partition and disconnect
//     hooks; TCP keeps the contract across real networks with sequence
//     numbers, acknowledgements and reconnects, frames encoded with msgpack.
//   - [github.com/lamportledger/lamportledger/ledger]: a hash-linked chain
//     of transfer blocks and the balance table derived from it, a durable
//     checksummed store, and Node, one client of the replicated ledger. A
//     transfer takes the mutex, checks the local balance, inserts and
//     persists its block, and releases the mutex with the block as payload,
//     so that the next holder has every earlier block. After a crash or a
//     restart, nodes exchange chain heads and fetch what they missed over
//     the mutex's application channel (Mutex.Send, DATA messages), and the
//     next holder first syncs with every peer, so a dead holder's block is
//     neither lost nor forked.
//   - examples/threeclients: the three-client command line program over TCP;
//     examples/inprocess and examples/tcp: three clients in one process,
//     over channels and over TCP loopback.
//
// Dependencies point one way: ledger and transport use lamportmutex;
// ledger never imports transport; nothing imports the examples.
//
// Wiring one client (see the ledger package for the full example):
//
//	genesis, _ := ledger.NewGenesis(ids, 10, pubKeys)
//	tr, _ := transport.NewTCP(transport.TCPConfig{ID: "1", ListenAddr: ":7001", Peers: addrs})
//	node, _ := ledger.NewNode(ledger.Config{ID: "1", Genesis: genesis, Signer: key1, Store: store}, tr)
//	defer node.Close(ctx)
//	res, err := node.Transfer(ctx, "2", 5)
package lamportledger
