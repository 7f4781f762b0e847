package ledger

import "testing"

// BenchmarkBatchCPU: the ledger's CPU for one mutex entry of batch
// transfers among 3 members, without mutex, network or store: the holder
// drafts the blocks (with the balance tables of their Results), seals and
// encodes them; each of the two other members decodes, verifies and
// appends them. Reported per block.
func BenchmarkBatchCPU(b *testing.B) {
	const batch = 21
	members := []string{"1", "2", "3"}
	g := richGenesis(b, members...)
	var chains [3]*Chain
	for i := range chains {
		chains[i] = mustChain(b, g)
	}
	blocks := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		maker := i % 3
		from, to := members[maker], members[(maker+1)%3]
		mc := chains[maker]
		d := mc.draft()
		var tables []Balances
		for range batch {
			before := d.table()
			if _, err := d.next(Transfer{ID: NewTransferID(), From: from, To: to, Amount: 1}, uint64(i)); err != nil {
				b.Fatal(err)
			}
			tables = append(tables, before, d.table())
		}
		if tables[len(tables)-1][to] != tables[0][to]+batch {
			b.Fatalf("%s gained %d in a batch of %d", to, tables[len(tables)-1][to]-tables[0][to], batch)
		}
		d.seal(testKey(from))
		payload, err := EncodeBatch(d.blocks)
		if err != nil {
			b.Fatal(err)
		}
		if err := mc.apply(d, len(d.blocks)); err != nil {
			b.Fatal(err)
		}
		for j := 1; j < 3; j++ {
			c := chains[(maker+j)%3]
			got, err := DecodeBatch(payload)
			if err == nil {
				err = checkRelease(from, got)
			}
			if err == nil {
				err = c.keys.verifySeals(got)
			}
			if err != nil {
				b.Fatal(err)
			}
			rd := c.draft()
			for _, blk := range got {
				if err := rd.addVerified(blk); err != nil {
					b.Fatal(err)
				}
			}
			if err := c.apply(rd, len(rd.blocks)); err != nil {
				b.Fatal(err)
			}
		}
		blocks += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(blocks), "ns/block")
}
