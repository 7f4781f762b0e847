package transporttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/lamportledger/lamportledger/lamportmutex"
)

// A stream is a numbered sequence of messages from one node to one peer,
// sent by one goroutine at a time. Message i carries Clock id<<32 | i, so
// the receiver can tell the stream and the place in it.
type stream struct {
	id    uint64
	from  *node
	to    string
	toInc uint64 // the Incarnation field its messages carry
	lossy bool   // its sender or receiver may end: messages may be lost

	mu   sync.Mutex
	next uint64 // the seq of the next message; accepted() is next-1
}

// newStream starts a stream from n to the current incarnation of peer to.
func (s *suite) newStream(from *node, to string, lossy bool) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stream{id: uint64(len(s.streams) + 1), from: from, to: to, toInc: s.nodes[to].inc, lossy: lossy, next: 1}
	s.streams[st.id] = st
	return st
}

func (s *suite) streamOf(clock uint64) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[clock>>32]
}

func seqOf(clock uint64) uint64 { return clock & (1<<32 - 1) }

// kinds cycles through the kinds a peer sends.
var kinds = []lamportmutex.Kind{lamportmutex.Request, lamportmutex.Reply, lamportmutex.Release, lamportmutex.Data}

// message builds message seq of st: a payload (for Release and Data) of
// size bytes, at least 8, starting with the Clock.
func (st *stream) message(seq uint64, kind lamportmutex.Kind, size int) lamportmutex.Message {
	m := lamportmutex.Message{Kind: kind, From: st.from.id, To: st.to, Clock: st.id<<32 | seq, Incarnation: st.toInc}
	if kind == lamportmutex.Release || kind == lamportmutex.Data {
		m.Payload = make([]byte, max(size, 8))
		binary.BigEndian.PutUint64(m.Payload, m.Clock)
		for i := 8; i < len(m.Payload); i++ {
			m.Payload[i] = byte(seq) ^ byte(i)
		}
	}
	return m
}

// wellFormed reports whether m is as message() builds it.
func (st *stream) wellFormed(m lamportmutex.Message) bool {
	if m.Incarnation != st.toInc {
		return false
	}
	if m.Kind != lamportmutex.Release && m.Kind != lamportmutex.Data {
		return m.Kind.Valid() && len(m.Payload) == 0
	}
	want := st.message(seqOf(m.Clock), m.Kind, len(m.Payload))
	return bytes.Equal(m.Payload, want.Payload)
}

// send sends the stream's next message; it counts only if Send accepts it.
func (st *stream) send(kind lamportmutex.Kind, size int) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	msgs := []lamportmutex.Message{st.message(st.next, kind, size)}
	err := st.from.tr.Send(msgs...)
	scribble(msgs)
	if err == nil {
		st.next++
	}
	return err
}

// sendBatch sends the stream's next messages, one of each of ks, in one
// call of Send; they count only if Send accepts the call.
func (st *stream) sendBatch(ks []lamportmutex.Kind, size int) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	msgs := make([]lamportmutex.Message, len(ks))
	for i, k := range ks {
		msgs[i] = st.message(st.next+uint64(i), k, size)
	}
	err := st.from.tr.Send(msgs...)
	scribble(msgs)
	if err == nil {
		st.next += uint64(len(ks))
	}
	return err
}

// scribble overwrites what a call of Send was given, which Send must not
// keep: the payloads, then the messages in the slice. A transport that
// kept either delivers what no Send accepted, or a payload altered.
func scribble(msgs []lamportmutex.Message) {
	for i := range msgs {
		for j := range msgs[i].Payload {
			msgs[i].Payload[j] = 0xa5
		}
		msgs[i] = lamportmutex.Message{}
	}
}

// sendN sends count messages of the cycling kinds, waiting with Flush and
// sending again when Send refuses one for a full queue. It returns the
// first other error.
func (st *stream) sendN(ctx context.Context, count int) error {
	for i := 0; i < count; i++ {
		kind := kinds[i%len(kinds)]
		for {
			err := st.send(kind, 16)
			if err == nil {
				break
			}
			if !errors.Is(err, lamportmutex.ErrQueueFull) {
				return fmt.Errorf("%s: Send to %s: %w", st.from.id, st.to, err)
			}
			if err := st.from.tr.Flush(ctx); err != nil {
				return fmt.Errorf("%s: Flush after a full queue: %w", st.from.id, err)
			}
		}
	}
	return nil
}

func (st *stream) accepted() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return int(st.next - 1)
}
