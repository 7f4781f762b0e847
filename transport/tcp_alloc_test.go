package transport

import (
	"bufio"
	"bytes"
	"testing"
)

// TestReadFrameAllocates: reading frames into a buffer large enough
// allocates nothing.
func TestReadFrameAllocates(t *testing.T) {
	var stream []byte
	for range 200 {
		stream = appendSeqFrame(stream, frameAck, 7, nil)
	}
	r := bytes.NewReader(stream)
	br := bufio.NewReaderSize(r, 512)
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := readFrame(br, fuzzFrameLimit, buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("readFrame: %v allocations per frame, want 0", allocs)
	}
}

// TestSendQueueReusesArray: a queue that empties keeps its backing array
// for the next message, so a ping-pong allocates no queue slot per
// message, in sequence order as ever; after a burst past maxSpare it lets
// the array go.
func TestSendQueueReusesArray(t *testing.T) {
	var o outPeer
	o.init(1 << 20)
	body := []outBody{{body: []byte{1, 2, 3}}}
	round := func() {
		if _, err := o.push(body); err != nil {
			t.Fatal(err)
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if got := o.q[0].seq; got != o.nextSeq-1 || o.base() != got {
			t.Fatalf("queued seq %d, base %d, next %d", got, o.base(), o.nextSeq)
		}
		o.ackTo(o.nextSeq - 1)
	}
	round()
	if allocs := testing.AllocsPerRun(100, round); allocs != 0 {
		t.Errorf("push and ACK of one message: %v allocations, want 0", allocs)
	}
	for range maxSpare + 1 {
		if _, err := o.push(body); err != nil {
			t.Fatal(err)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ackTo(o.nextSeq - 1)
	if len(o.q) != 0 || o.spare != nil {
		t.Errorf("after a burst of %d, all acknowledged: %d queued, spare of %d kept, want none", maxSpare+1, len(o.q), cap(o.spare))
	}
}
