// Package ledger is the replicated ledger of LamportLedger: a verified,
// durable chain of transfers between clients, and the balance table it
// implies.
//
// # Data
//
// A Transfer moves a positive int64 Amount from one member to another. A
// Block holds one transfer, its Height, the Hash of its predecessor (Prev),
// the Lamport clock of the mutex grant under which it was made (Clock), and
// its own Hash: the SHA-256 of a canonical, versioned, hand-written byte
// encoding (see codec.go). Block 0, the genesis, holds the members, their
// initial balances (DefaultInitialBalance each) and their Ed25519 public
// keys, so its hash names the ledger and binds the keys.
//
// Blocks are signed by the member that spends in them. A holder seals each
// batch it commits: the batch's last block carries Sig, the signature of
// its Hash by the holder's key (Config.Signer), which covers the batch's
// earlier blocks through their hash links. Every block must be covered by
// such a seal of its own sender; unsealed or forged blocks are refused on
// every path (a release, catch-up, the node's own file), so a member cannot
// forge another's transfer. A Chain admits only sealed blocks that extend
// its head correctly, at most MaxBatch of them under one seal; Node.Verify
// re-checks everything from genesis, streaming the blocks from the store,
// and reports the first bad height as a *BlockError. Balances is the
// key-value table derived from the chain; no balance ever goes negative.
//
// A transfer ID must not be among the last IDWindow transfer IDs of any
// member; so a retried TransferWithID is recognised while its sender has
// committed fewer than IDWindow transfers since. This is a rule of the
// chain, the same on every replica.
//
// Memory is bounded by configuration, not by history: a Chain holds the
// genesis, the head, the balances by member index, a window of the most
// recent blocks in fixed-size, pointer-free chunks, and members × IDWindow
// transfer IDs. Older blocks are read from the Store when asked for. A
// checkpoint of that state (genesis hash, head, balances, ID windows),
// signed by the node's key, lets a restart verify only the blocks after it.
//
// # Storage
//
// A Store persists blocks, append-only, and one checkpoint. Writing is
// split from durability: Append writes, Sync makes what was appended
// durable. Since what a crash leaves is always a prefix of what was
// appended, holding at least what the last Sync covered, a node may
// write, release the mutex, and fsync later, as long as it reports
// success only after a Sync that covers the block.
//
// OpenFileStore keeps an append-only log of length-prefixed,
// CRC32C-checksummed records, and a checkpoint file beside it that
// records the log offset after the checkpoint's block, so that Load reads
// only what follows it (FileOptions.NoSync makes Sync do nothing, for
// benchmarks, unsafely). Opening checks the framing of the log from the
// checkpoint on: a torn last record is cut off with a warning; any other
// damage is a *CorruptError naming the file, offset and height. A damaged
// checkpoint file is ignored with a warning, and the whole log read. The
// store keeps no blocks in memory: Read reads old ones from the log.
// Hashes and seals are the node's to verify; it truncates blocks at the
// end that no seal covers (the rest of a torn batch). NewMemStore keeps
// blocks in memory.
//
// # Durability
//
// A Transfer reports success only once this node's own store has synced
// its block. Config.Durability says when that sync happens:
//
//   - SyncAfterRelease (the default): the holder writes its batch, releases
//     the mutex with it, and syncs in the background, one sync for every
//     batch written meanwhile; a peer writes a received batch before the
//     release takes effect there, and syncs it in the background too. The
//     mutex is never held across a sync, so the next holder does not wait
//     for anyone's disk.
//   - SyncBeforeRelease: the holder syncs before it releases, and every
//     peer syncs a received batch before the release takes effect there.
//
// Why every success survives SIGKILL and power loss of its client, with
// SyncAfterRelease too: success is reported only after this client's sync
// covers the block, and the store is append-only, so that sync covers
// every block below it as well. After a power loss the client's file holds
// a prefix of its chain that includes every block whose success it
// reported. Blocks written after the last sync may be lost with the power;
// none of them was reported as a success here, and the client fetches
// them back from its peers (catch-up) if any peer has them. SIGKILL alone
// loses nothing written: the operating system holds it. A Transfer that
// succeeded elsewhere is safe the same way on its own client's disk.
//
// # Checkpoints
//
// A node saves a checkpoint (its head, balances and ID windows, signed
// with its own key) every CheckpointInterval blocks, after a sync that
// covers them, and at Close. A restart verifies the checkpoint and only
// the blocks after it; one that does not verify, or does not match the
// store's block at its height, is passed over with a warning, and the
// chain is verified from genesis. Node.Verify re-checks everything from
// genesis on demand.
//
// # Replication
//
// A Node is one client: NewNode builds it on a transport to its peers and
// starts its mutex (a lamportmutex.Mutex whose members are the genesis's),
// and Close stops it all, in order:
//
//	// keys: every member's Ed25519 public key; key1: member 1's private key.
//	genesis, _ := ledger.NewGenesis(members, ledger.DefaultInitialBalance, keys)
//	st, err := ledger.OpenFileStore("ledger-1.log", genesis, ledger.FileOptions{})
//	node, err := ledger.NewNode(ledger.Config{ID: "1", Genesis: genesis, Signer: key1, Store: st}, tr)
//	defer node.Close(ctx)
//	res, err := node.Transfer(ctx, "2", 3)
//
// Transfer takes the distributed mutex, checks the local balance, writes
// and inserts the new block, and releases the mutex with the encoded block
// as payload. Every peer verifies, writes and inserts it before the release
// takes effect there, so the next holder has every earlier block. (A
// bystander may get releases from different peers out of order; a block
// ahead of a gap is held until the gap fills.) Balance, Balances, Head
// and Err read an immutable snapshot of the local state, published after
// every change: without the mutex, and without waiting for the node's
// other work.
//
// Group commit: one committer goroutine per node takes the mutex for the
// transfers its callers submit. Those that queue while it waits for the
// mutex share the next entry: their blocks are built in submission order
// (one that the balance cannot pay at its turn is refused, the rest go
// ahead), written with one store append, and sent together with the one
// release. Config.MaxBatch bounds a batch; 1 is the textbook's one entry
// per transfer. A transfer whose ctx ends before its entry is withdrawn and
// never applied.
//
// Close finishes the batch in hand and releases the mutex with its blocks,
// fails what is still queued with ErrClosed, syncs what was written, closes
// the mutex (waiting, up to its ctx, for the transport to deliver what was
// sent), then the transport and the store. A node that dies while it holds
// the mutex does not release it without its block: the peers then wait for
// this client's restart and fetch the block, as after a crash.
//
// # Faulty peers
//
// A peer's bad input (a release or catch-up message that does not decode,
// a block that does not extend the chain or fails verification, a block in
// a release that spends another client's money, a head or answer that is
// not in the chain, more heads, answers and fetches than the inbox holds)
// is refused: one log line names the peer and the cause, EventPeerRefused
// reports it, and that incarnation of the peer is quarantined (the mutex
// ends its session and ignores it until it restarts). The node keeps
// serving reads, and commits again once the peer's next incarnation
// behaves; a sync round waiting on a quarantined peer waits for that
// restart. The node stops (ErrDiverged, Node.Err, EventFailed) only for
// its own storage failure, or for a fork proven by two validly sealed
// blocks at one height on the same predecessor, both sealed by one member,
// which a peer other than that member relayed (a *ConflictError carrying
// both blocks). A peer that sends a second block of its own for a height
// at which this node has its first has equivocated, and only it is
// refused.
//
// Blocks are not bound to mutex grants, a known limit: a member that does
// not hold the mutex can still seal a block of its own for the next height
// and send it by catch-up, and the node cannot tell it from a holder's.
// Two blocks at one height sealed by two different members therefore
// prove nothing about anyone: the one that comes second is refused
// (EventDisagreement, a Warn log line naming both blocks and their
// makers), and the peer that sent it is not quarantined, since it may be
// honest and only relay what it has; nor is a peer whose block does not
// extend a block another peer sent. The replicas then disagree at that
// height, and stall rather than stop: each keeps its chain, and a node
// refuses the blocks (and the head claims) built on the other's block.
//
// What a peer feeds is bounded: the catch-up inbox per peer
// (MaxInboxMessages, MaxInboxBytes for blocks, which are dropped and
// fetched again beyond them, and 256 other messages), received blocks to
// the window
// MaxPending above the head, the maps to the members. Events reach
// Config.OnEvent through a queue of EventQueueSize on the node's own
// goroutine, so a slow subscriber loses events (EventDropped) instead of
// stalling the mutex, and Close waits for it only as long as its ctx allows.
//
// # Catch-up
//
// Blocks normally travel with their holder's release. A process that dies
// breaks that in two ways: a client that was down missed the releases sent
// to its dead incarnation, and a holder that dies while its release is on
// the way leaves some peers with its block and some without. Both are
// announced by the mutex's PeerUp, and the node repairs them over the
// mutex's application channel (its Send), FIFO with the
// releases:
//
//   - On every PeerUp, a node tells every peer its head. A peer with more
//     blocks sends the missing ones; the receiver verifies each against its
//     own chain (height, previous hash, hash, funds), persists and inserts
//     it (EventBlockInserted with Fetched set). A restarted client, even
//     one whose ledger file was lost, catches up at once.
//   - A node that saw a PeerUp since its last sync, once granted the mutex
//     and before it builds a block, asks every peer for its head, takes the
//     blocks they send, and goes ahead only when it has every peer's head.
//     So the next holder's chain is at least as long as every live
//     peer's, and a dead holder's block that reached another peer's chain,
//     or that the holder persisted, is never overwritten by another at its
//     height.
//
// A node far behind holds only blocks within MaxPending of its head;
// beyond that it drops them and asks its peers again (a fetch, which has
// a peer send every block after the head). An announcement has a peer
// skip the blocks it sent to that incarnation already.
//
// A catch-up message that a full transport queue refuses (ErrPeerBusy) is
// lost, so a node left behind catches up by itself: one that knows it
// lacks blocks (it holds some ahead of a gap, or a peer told it a higher
// head) and whose head has not moved for a while (half a second at
// first, doubling up to 30 s) fetches them; and a node whose blocks or
// head a peer's full queue refused tells that peer its head again a while
// later, so that the peer learns it is behind.
//
// Two chains that hold different blocks at one height are never merged:
// see Faulty peers for when that is a peer's fault and when it stops the
// node. Two clients of
// different ledgers do not get that far: every head they exchange names
// the sender's genesis, and a peer that names another is refused
// (ErrGenesisMismatch) and quarantined, whatever the transport. (The TCP
// transport can refuse it even earlier, given TCPConfig.Cluster.)
//
// # Failures
//
// What is survived, and what a user sees:
//
//   - A client killed at any moment (idle, waiting for the mutex, holding
//     it, or between the deliveries of its release) and restarted on its
//     file: it comes back with every block it had persisted, verified (a
//     record torn by the crash is cut off with a warning), and catches up
//     on the rest. Every transfer whose Transfer call returned success is
//     in every replica's chain once the client is back. A transfer in
//     flight when it died was either committed or not; retried with the
//     same TransferWithID after the restart, it is applied once (while its
//     sender has made fewer than IDWindow transfers since).
//   - A client whose ledger file is lost: it restarts from genesis and
//     fetches every block from its peers. Its own blocks survive if they
//     reached a peer; a release reaches every live peer unless the client
//     died while sending it.
//   - A network cut: the transport holds and resends messages, so nothing
//     is lost; transfers wait until it heals (they honour their ctx).
//   - A client that stays away: nobody can take the mutex, since every
//     peer must answer, so Transfer waits until its ctx ends and says so
//     (the threeclients program names the missing peers). Balances and
//     the chain can still be read everywhere.
//
// What is not survived: a holder that dies before its block reaches any
// disk or any peer (FileOptions.NoSync or a MemStore, then a machine
// crash) loses that block, although its Transfer may have returned
// success; with a FileStore that syncs (the default) Transfer returns only
// after the block is on disk. Losing the disk of every client that has a block loses
// the block. If a holder loses an unsynced block after its release
// reached only peers that were behind (holding the block ahead of a gap),
// those peers drop it when the holder's next incarnation comes up. One
// whose gap filled first keeps it; if it had answered the next holder's
// sync round before, that holder may put another block at that height,
// and the peer keeps its chain and refuses the other block
// (EventDisagreement) instead of forking in silence. A faulty
// member can stall progress (the mutex needs every peer) but costs only its
// own session, never an honest node's life.
package ledger
