package lamportmutex

import (
	"errors"
	"fmt"
	"testing"
)

// A Transport that fails part way through a step's sends has taken what
// it accepted before it failed: Stats.Sent counts those messages, and
// Trace reports them, as it does when every Send succeeds.
func TestFailedSendCountsWhatTheTransportTook(t *testing.T) {
	log := &traceLog{}
	mu, ft := newTrioMutex(t, Config{Trace: log.add})
	lockTrio(t, mu, ft)
	ft.send = func(msg Message) error {
		if msg.To == "3" && msg.Kind == Release {
			return errors.New("the transport broke")
		}
		return nil
	}
	if err := mu.Unlock([]byte("update")); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrTransport) {
		t.Fatalf("Unlock with the transport failing for 3: %v, want ErrClosed wrapping ErrTransport", err)
	}
	if n := len(ft.sentTo("2", Release)); n != 1 {
		t.Fatalf("the transport took %d RELEASEs to 2, want 1", n)
	}
	if st := mu.Stats(); st.Sent[Release] != 1 || st.SendErrors != 1 {
		t.Errorf("Stats: %d RELEASEs sent and %d send errors; the transport took one RELEASE and refused one", st.Sent[Release], st.SendErrors)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	traced := 0
	for _, ev := range log.events {
		if ev.Sent && ev.Message.Kind == Release {
			traced++
		}
	}
	if traced != 1 {
		t.Errorf("Trace reported %d RELEASEs sent; the transport took one", traced)
	}
}

// Stats.SendErrors counts the messages the Transport refused, as Sent
// counts those it took, also when it refuses a call of several: a
// restarted peer whose queue is full refuses the HELLO and the REQUEST
// resent to it, which one step sends it in one call.
func TestSendErrorsCountsEveryRefusedMessage(t *testing.T) {
	mu, ft := newTrioMutex(t, Config{})
	lockTrio(t, mu, ft)
	ft.send = func(msg Message) error {
		if msg.To == "3" && msg.Incarnation == 2 {
			return fmt.Errorf("queue to 3: %w", ErrQueueFull)
		}
		return nil
	}
	ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: 2})
	wantQuarantines(t, ft, "3#2")
	if st := mu.Stats(); st.SendErrors != 2 {
		t.Errorf("Stats.SendErrors = %d; the Transport refused a HELLO and a REQUEST", st.SendErrors)
	}
}
