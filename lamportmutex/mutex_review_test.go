package lamportmutex

// Attacks on the run-to-completion driver: interleavings of Lock, Close,
// the callbacks and Quarantine that the Transport contract allows.

import (
	"context"
	"errors"
	"testing"
	"time"
)

// gateCtx is a context whose Done blocks its first caller until the test
// opens the gate: Lock evaluates ctx.Done() as it enters its select, so the
// test can run steps between Lock's queueing and its wait.
type gateCtx struct {
	entered chan struct{} // closed when Done is first called
	gate    chan struct{} // Done returns once it is closed
	never   chan struct{}
	first   bool
}

func newGateCtx() *gateCtx {
	return &gateCtx{entered: make(chan struct{}), gate: make(chan struct{}), never: make(chan struct{}), first: true}
}

func (c *gateCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *gateCtx) Err() error                  { return nil }
func (c *gateCtx) Value(any) any               { return nil }

func (c *gateCtx) Done() <-chan struct{} {
	if c.first { // only Lock's goroutine calls Done
		c.first = false
		close(c.entered)
		<-c.gate
	}
	return c.never
}

// A Lock with no deadline is granted, and Close comes before the Lock call
// has read its grant: Close releases the grant (no caller has it), and the
// Lock call must then return ErrClosed, not wait forever for a grant that
// Close took away. (Without the fix this test hangs.)
func TestCloseBeforeLockReadsItsGrant(t *testing.T) {
	ft := newFakeTransport("1", 1)
	mu, err := New(Config{ID: "1", Peers: []string{"1", "2"}, Transport: ft})
	if err != nil {
		t.Fatal(err)
	}
	ft.syncWith(t, mu, []string{"2"}, 1)
	ctx := newGateCtx()
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(ctx)
		locked <- err
	}()
	<-ctx.entered
	req := ft.sentTo("2", Request)[0]
	ft.feed(Message{Kind: Reply, From: "2", To: "1", Clock: req.Clock + 1, Incarnation: 1})
	if !mu.State().Held {
		t.Fatal("not granted")
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(ctx.gate)
	if err := <-locked; !errors.Is(err, ErrClosed) {
		t.Fatalf("Lock = %v, want ErrClosed", err)
	}
	if len(ft.sentTo("2", Release)) != 1 {
		t.Fatal("Close kept a lock whose grant no caller received")
	}
}
