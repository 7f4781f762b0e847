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
// encoding (see codec.go). Block 0, the genesis, holds the members and
// their initial balances (DefaultInitialBalance each), so its hash names
// the ledger. A Chain admits only blocks that extend its head correctly;
// Chain.Verify and VerifyBlocks re-check everything from genesis and report
// the first bad height as a *BlockError. Balances is the key-value table
// derived from the chain; no balance ever goes negative.
//
// # Storage
//
// A Store persists blocks. OpenFileStore keeps an append-only log of
// length-prefixed, CRC32C-checksummed records and fsyncs each append before
// it returns (FileOptions.NoSync turns that off for benchmarks, unsafely).
// Opening replays and verifies the log: a torn last record is cut off with
// a warning; any other damage is a *CorruptError naming the file, offset
// and height. NewMemStore keeps blocks in memory.
//
// # Replication
//
// A Node is one client. Transfer takes the distributed mutex (a Locker,
// satisfied by *lamportmutex.Mutex), checks the local balance, persists and
// inserts the new block, and releases the mutex with the encoded block as
// payload. Every peer's HandleRelease verifies, persists and inserts it
// before the release takes effect there, so the next holder has every
// earlier block. (A bystander may get releases from different peers out of
// order; a block ahead of a gap is held until the gap fills.) Balance reads
// the local table without the mutex.
//
// Group commit: one committer goroutine per node takes the mutex for the
// transfers its callers submit. Those that queue while it waits for the
// mutex share the next entry: their blocks are built in submission order
// (one that the balance cannot pay at its turn is refused, the rest go
// ahead), persisted with one store append (one fsync), and sent together
// with the one release (EncodeBatch). Config.MaxBatch bounds a batch; 1 is
// the textbook's one entry per transfer. A transfer whose ctx ends before
// its entry is withdrawn and never applied.
//
// The mutex needs the node's HandleRelease when it is built, and the node
// needs the mutex to transfer, so a node is wired in three steps, leaving
// no moment in which a release could arrive with no handler:
//
//	genesis, _ := ledger.NewGenesis(members, ledger.DefaultInitialBalance)
//	st, err := ledger.OpenFileStore("ledger-1.log", genesis, ledger.FileOptions{Logger: log})
//	node, err := ledger.NewNode(ledger.Config{ID: "1", Members: members, Store: st, Logger: log})
//	mu, err := lamportmutex.New(lamportmutex.Config{ID: "1", Peers: members, Transport: tr,
//		OnRelease: node.HandleRelease, StartClock: node.Head().Clock})
//	err = node.SetLocker(mu) // Transfer returns ErrNoLocker before this
//	res, err := node.Transfer(ctx, "2", 3)
//
// Shut down in the reverse order: close the mutex, then the node (which
// closes its store). A block received that fails verification stops the
// node (ErrDiverged, Node.Err, EventFailed) instead of letting it diverge.
//
// # Failures
//
// What is survived: a client stopped cleanly or killed while idle comes
// back from its file with every block it had, verified; a record torn by
// the crash is cut off. While a client is down nobody can take the mutex,
// so nobody commits without it; balances can still be read everywhere.
//
// What is not survived yet, and is reported rather than hidden: a client
// that dies after its peers committed a block it had not persisted, or that
// dies holding the mutex after its release reached some peers but not all,
// leaves replicas that differ at one height. There is no catch-up protocol
// yet: a replica that is granted the mutex with a gap in its chain, or that
// receives a block that conflicts with its own, stops with ErrDiverged; the
// others are unaffected. Repair by copying a healthy peer's ledger file.
package ledger
