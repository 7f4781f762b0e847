package lamportmutex

import (
	"context"
	"slices"
	"testing"
)

// newTrioMutex starts peer 1 of {1, 2, 3} on a fake transport, with both
// peers up.
func newTrioMutex(t *testing.T, cfg Config) (*Mutex, *fakeTransport) {
	t.Helper()
	ft := newFakeTransport("1", 1)
	cfg.ID, cfg.Peers, cfg.Transport = "1", []string{"1", "2", "3"}, ft
	mu, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mu.Close(context.Background()) })
	ft.syncWith(t, mu, []string{"2", "3"}, 1)
	return mu, ft
}

// lockTrio takes the lock at peer 1, both peers answering its request.
func lockTrio(t *testing.T, mu *Mutex, ft *fakeTransport) {
	t.Helper()
	n := len(ft.sentTo("2", Request))
	locked := make(chan error, 1)
	go func() {
		_, err := mu.Lock(context.Background())
		locked <- err
	}()
	for _, p := range []string{"2", "3"} {
		waitSent(t, ft, p, Request, n+1)
		req := ft.sentTo(p, Request)[n]
		ft.feed(Message{Kind: Reply, From: p, To: "1", Clock: req.Clock + 1, Incarnation: 1})
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
}

// kindsTo returns the kinds of what ft sent to peer after its HELLO, in
// order.
func (f *fakeTransport) kindsTo(peer string) []Kind {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []Kind
	for _, m := range f.sent {
		if m.To == peer && m.Kind != Hello {
			ks = append(ks, m.Kind)
		}
	}
	return ks
}

// lastCallTo returns the kinds of the last Send call to peer.
func (f *fakeTransport) lastCallTo(peer string) []Kind {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if c := f.calls[i]; len(c) > 0 && c[0].To == peer {
			var ks []Kind
			for _, m := range c {
				ks = append(ks, m.Kind)
			}
			return ks
		}
	}
	return nil
}

// heldAttempts bounds the attempts a test makes to see a RELEASE still
// held when it stops the linger timer: a slow machine loses a few to the
// timer, and an Unlock that holds nothing back loses them all.
const heldAttempts = 100

// unlockHeld starts peer 1 of {1, 2, 3} with cfg(), takes the lock and
// unlocks it without payload, then stops the linger timer, as a timer slow
// to fire would be: the RELEASEs to 2 and 3 stay held until a later message
// to their peer carries them, the test plays the timer (mu.sendHeld), or
// Close sends them. An attempt whose timer fired before it was stopped (a
// slow machine) is dropped and made again. It is the Mutex's first
// Unlock: after a later one, a stopped timer would not show that an
// earlier firing's sendHeld no longer waits for the lock.
func unlockHeld(t *testing.T, cfg func() Config) (*Mutex, *fakeTransport) {
	t.Helper()
	for range heldAttempts {
		mu, ft := newTrioMutex(t, cfg())
		lockTrio(t, mu, ft)
		if err := mu.Unlock(nil); err != nil {
			t.Fatal(err)
		}
		mu.lockState()
		held := mu.linger.Stop() && len(mu.held) > 0
		mu.unlockState()
		if held {
			return mu, ft
		}
		if err := mu.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("in %d attempts, nothing was still held after Unlock without payload", heldAttempts)
	return nil, nil
}

// A peer that takes the lock again at once sends its RELEASE and its next
// REQUEST in one Send per peer. The test stops the linger timer, so that
// the RELEASE waits for the REQUEST however slow the machine.
func TestUnlockHoldsReleaseForTheNextRequest(t *testing.T) {
	for range 10 {
		mu, ft := unlockHeld(t, func() Config { return Config{} })
		lockTrio(t, mu, ft)
		for _, p := range []string{"2", "3"} {
			if got := ft.lastCallTo(p); !slices.Equal(got, []Kind{Release, Request}) {
				t.Fatalf("to %s: the last Send was %v, want the held RELEASE and the next REQUEST together", p, got)
			}
		}
		if err := mu.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// Whether or not its linger ends first, each peer gets every RELEASE
// before the next REQUEST.
func TestHeldReleaseKeepsItsPlace(t *testing.T) {
	mu, ft := newTrioMutex(t, Config{})
	for range 50 {
		lockTrio(t, mu, ft)
		if err := mu.Unlock(nil); err != nil {
			t.Fatal(err)
		}
	}
	waitSent(t, ft, "2", Release, 50)
	waitSent(t, ft, "3", Release, 50)
	for _, p := range []string{"2", "3"} {
		ks := ft.kindsTo(p)
		for i, k := range ks {
			if want := [2]Kind{Request, Release}[i%2]; k != want {
				t.Fatalf("to %s: message %d is %v, want %v; all: %v", p, i, k, want, ks)
			}
		}
	}
}

// A RELEASE held back goes before the REPLY to a peer that asks for the
// lock, in the same Send: that peer must not see this peer's answer while
// its old request still heads the queue there. What is held for the
// other peer stays held.
func TestHeldReleaseGoesBeforeTheReply(t *testing.T) {
	mu, ft := unlockHeld(t, func() Config { return Config{} })
	ft.feed(Message{Kind: Request, From: "2", To: "1", Clock: 50, Incarnation: 1})
	if ks := ft.kindsTo("2"); !slices.Equal(ks, []Kind{Request, Release, Reply}) {
		t.Fatalf("to 2: %v, want REQUEST, RELEASE, REPLY", ks)
	}
	if ks := ft.lastCallTo("2"); !slices.Equal(ks, []Kind{Release, Reply}) {
		t.Errorf("the last Send to 2: %v, want RELEASE and REPLY together", ks)
	}
	if ks := ft.kindsTo("3"); !slices.Equal(ks, []Kind{Request}) {
		t.Errorf("to 3: %v, want its RELEASE still held", ks)
	}
	if err := mu.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A RELEASE held back goes out by itself when nothing else is sent.
func TestHeldReleaseGoesOutAlone(t *testing.T) {
	mu, ft := newTrioMutex(t, Config{})
	lockTrio(t, mu, ft)
	if err := mu.Unlock(nil); err != nil {
		t.Fatal(err)
	}
	waitSent(t, ft, "2", Release, 1)
	waitSent(t, ft, "3", Release, 1)
}

// A RELEASE goes out with its step, not held: to a peer whose request is
// queued here, and to every peer when it carries a payload; and Close
// sends one that is held.
func TestReleaseNotHeld(t *testing.T) {
	sentNow := func(t *testing.T, ft *fakeTransport, what string, peers ...string) {
		t.Helper()
		for _, p := range peers {
			if len(ft.sentTo(p, Release)) == 0 {
				t.Errorf("%s: no RELEASE to %s when the call returned", what, p)
			}
		}
	}
	t.Run("a peer waits", func(t *testing.T) {
		mu, ft := newTrioMutex(t, Config{})
		lockTrio(t, mu, ft)
		ft.feed(Message{Kind: Request, From: "3", To: "1", Clock: 50, Incarnation: 1})
		if err := mu.Unlock(nil); err != nil {
			t.Fatal(err)
		}
		sentNow(t, ft, "Unlock with 3's request queued", "3")
	})
	t.Run("a payload", func(t *testing.T) {
		mu, ft := newTrioMutex(t, Config{})
		lockTrio(t, mu, ft)
		if err := mu.Unlock([]byte("update")); err != nil {
			t.Fatal(err)
		}
		sentNow(t, ft, "Unlock with a payload", "2", "3")
	})
	t.Run("close", func(t *testing.T) {
		mu, ft := unlockHeld(t, func() Config { return Config{} })
		if err := mu.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		sentNow(t, ft, "Close after Unlock", "2", "3")
	})
}
