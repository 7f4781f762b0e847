package ledger

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func recordSeeds() [][]byte {
	g, _ := NewGenesis([]string{"1", "2", "3"}, 10, testPubKeys("1", "2", "3"))
	c, _ := NewChain(g)
	b, _ := nextSealed(c, Transfer{ID: TransferID{1}, From: "1", To: "2", Amount: 3}, 1)
	ge, _ := g.MarshalBinary()
	one := appendRecord(nil, ge)
	two, _ := appendBlockRecord(bytes.Clone(one), b)
	return [][]byte{nil, one, two, two[:len(two)-3], append(bytes.Clone(two), 0, 0, 0, 0, 0, 0, 0, 0, 0)}
}

// FuzzRecordReader: the record reader never panics, never returns more
// than the input holds, and what it returns are exactly the records that
// appendRecord would write.
func FuzzRecordReader(f *testing.F) {
	for _, s := range recordSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := newRecordReader(bytes.NewReader(data), 0, int64(len(data)))
		for {
			off := rr.off
			p, err := rr.next()
			if err != nil {
				if err == io.EOF && off != int64(len(data)) {
					t.Fatalf("EOF at %d of %d", off, len(data))
				}
				return
			}
			rec := appendRecord(nil, p)
			if !bytes.Equal(rec, data[off:rr.off]) {
				t.Fatalf("record at %d does not re-encode to its bytes", off)
			}
		}
	})
}

func TestRecordBlockRoundTrip(t *testing.T) {
	seeds := recordSeeds()
	two := seeds[2]
	rr := newRecordReader(bytes.NewReader(two), 0, int64(len(two)))
	for i := range 2 {
		p, err := rr.next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if _, err := decodeBlock(p); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if _, err := rr.next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	torn := seeds[3]
	rr = newRecordReader(bytes.NewReader(torn), 0, int64(len(torn)))
	_, _ = rr.next()
	if _, err := rr.next(); !errors.Is(err, errTorn) {
		t.Fatalf("torn: %v", err)
	}
}
