package lamportmutex

// Attacks on the run-to-completion driver: interleavings of Lock, Close,
// the callbacks and Quarantine that the Transport contract allows.

import (
	"context"
	"errors"
	"runtime"
	"strings"
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

// A message of peer 3 is taken in while peer 2's callback runs, and waits
// for its turn; that callback then quarantines 3 (the docs allow Quarantine
// from a callback). Quarantine's promise, that the Mutex ignores everything
// further from that incarnation, covers the waiting message: its callback
// must not run, as a RELEASE's OnRelease would not.
func TestQuarantineFromACallbackStopsAWaitingMessage(t *testing.T) {
	for _, kind := range []Kind{Data, Release} {
		t.Run(kind.String(), func(t *testing.T) {
			ft := newFakeTransport("1", 1)
			var mu *Mutex
			inCallback, proceed := make(chan struct{}), make(chan struct{})
			var from3 []string
			handle := func(from string, p []byte) error {
				if from == "2" {
					close(inCallback)
					<-proceed
					mu.Quarantine("3", errors.New("2 showed that 3 lies"))
					return nil
				}
				from3 = append(from3, string(p))
				return nil
			}
			mu, err := New(Config{ID: "1", Peers: []string{"1", "2", "3"}, Transport: ft,
				OnMessage: handle, OnRelease: handle})
			if err != nil {
				t.Fatal(err)
			}
			ft.syncWith(t, mu, []string{"2", "3"}, 1)
			done2, done3 := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done2)
				ft.feed(Message{Kind: Data, From: "2", To: "1", Payload: []byte("evidence"), Incarnation: 1})
			}()
			<-inCallback
			go func() {
				defer close(done3)
				msg := Message{Kind: Data, From: "3", To: "1", Payload: []byte("lie"), Incarnation: 1}
				if kind == Release {
					// 3 requested and released, its RELEASE carrying a payload.
					ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: 5, Incarnation: 1})
					msg = Message{Kind: Release, From: "3", To: "1", Clock: 6, Payload: []byte("lie"), Incarnation: 1}
				}
				ft.feed(msg)
			}()
			waitInCallbackLock(t)
			close(proceed)
			<-done2
			<-done3
			if len(from3) != 0 {
				t.Errorf("the application handled %q from 3 after it quarantined 3", from3)
			}
			if err := mu.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// waitInCallbackLock waits until a goroutine waits for its turn to run a
// callback (blocked taking Mutex.cb), read from the goroutines' stacks.
func waitInCallbackLock(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if i := strings.Index(g, "sync.(*Mutex).Lock"); i >= 0 && strings.Contains(g[i:], "lamportmutex.(*Mutex).callback(") {
				return
			}
		}
		runtime.Gosched()
	}
}
