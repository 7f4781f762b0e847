package ledger

import (
	"testing"
)

// settle applies r's queued actions as if each succeeded, continuations
// included, and returns the payloads of its releases.
func settle(r *replica) (released [][]byte) {
	for len(r.out) > 0 {
		for _, a := range r.take() {
			if a.kind == actRelease && a.payload != nil {
				released = append(released, a.payload)
			}
			if a.then != nil {
				a.then(nil)
			}
		}
	}
	return released
}

// commitOne has r commit one transfer to to under clock, and returns the
// release payload's blocks.
func commitOne(t *testing.T, r *replica, to string, amount int64, clock uint64) []Block {
	t.Helper()
	q := &request{t: Transfer{ID: NewTransferID(), From: r.id, To: to, Amount: amount}, done: make(chan struct{})}
	r.commit([]*request{q}, clock)
	released := settle(r)
	if len(released) != 1 || q.err != nil {
		t.Fatalf("commit: %d releases, %v", len(released), q.err)
	}
	blocks, err := DecodeBatch(released[0])
	if err != nil {
		t.Fatal(err)
	}
	return blocks
}

// Blocks held ahead of a gap die with the incarnation that sent them: a
// holder that lost its released block to a power cut builds another at
// its height once it restarts (no sync round sees a held block), so a peer
// that filled the gap later with the held block would fork from it.
func TestPendingBlocksDieWithTheirSender(t *testing.T) {
	g, err := NewGenesis([]string{"1", "2"}, DefaultInitialBalance, testPubKeys("1", "2"))
	if err != nil {
		t.Fatal(err)
	}
	maker, _ := testReplica(t, g, "2")
	first := commitOne(t, maker, "1", 1, 3)
	lost := commitOne(t, maker, "1", 2, 5)

	// Peer 1 lacks block 1 (its catch-up was dropped) and holds block 2,
	// which came with 2's release.
	r, _ := testReplica(t, g, "1")
	r.peerUp("2")
	var verdict error
	r.peerRelease("2", lost, r.checkReceived("2", lost, false), &verdict)
	settle(r)
	if verdict != nil || len(r.pending) != 1 {
		t.Fatalf("the release ahead of a gap: verdict %v, %d held", verdict, len(r.pending))
	}

	// 2 loses block 2 and restarts with block 1; it builds another block 2.
	st, err := NewMemStore(g)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(first...); err != nil {
		t.Fatal(err)
	}
	chain, cp, err := loadChain(st, g, testPubKeys("2")["2"], maker.log)
	if err != nil {
		t.Fatal(err)
	}
	reborn := newReplica(Config{ID: "2", Signer: testKey("2"), MaxBatch: 4}, chain, cp, st.Read, maker.log)
	rebuilt := commitOne(t, reborn, "1", 3, 9)

	// Peer 1 hears of 2's new incarnation, gets block 1 by catch-up (also
	// from 2's old incarnation, queued before its PeerUp), then 2's new
	// release.
	oldEpoch := r.epoch["2"]
	r.peerUp("2")
	settle(r)
	r.inbound(inbound{from: "2", epoch: oldEpoch}, syncMsg{op: opBlocks, blocks: lost}, nil, r.checkReceived("2", lost, true))
	settle(r)
	r.inbound(inbound{from: "2", epoch: r.epoch["2"]}, syncMsg{op: opBlocks, blocks: first}, nil, r.checkReceived("2", first, true))
	settle(r)
	if h := r.chain.Head(); h.Height != 1 || h.Hash != first[0].Hash {
		t.Fatalf("after the gap filled, the head is %d %s: a block of 2's dead incarnation was inserted", h.Height, h.Hash.Short())
	}
	r.peerRelease("2", rebuilt, r.checkReceived("2", rebuilt, false), &verdict)
	settle(r)
	if h := r.chain.Head(); verdict != nil || r.failed != nil || h.Hash != rebuilt[0].Hash {
		t.Fatalf("2's new block 2: verdict %v, failed %v, head %d %s", verdict, r.failed, h.Height, h.Hash.Short())
	}
}
