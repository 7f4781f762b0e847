package lamportmutex

import (
	"context"
	"slices"
	"testing"
)

// A RELEASE held back for a peer goes in front of whatever this peer sends
// that peer next, whichever path sends it: the application's DATA, and
// the HELLO to a new incarnation (the RELEASE still names the incarnation
// it was meant for, which the new one ignores as stale). What is held for
// the other peer still goes out when its linger ends.
func TestHeldReleaseGoesBeforeEveryLaterMessage(t *testing.T) {
	t.Run("data", func(t *testing.T) {
		mu, ft := unlockHeld(t, func() Config { return Config{} })
		if err := mu.Send("2", []byte("catch up")); err != nil {
			t.Fatal(err)
		}
		if ks := ft.kindsTo("2"); !slices.Equal(ks, []Kind{Request, Release, Data}) {
			t.Fatalf("to 2: %v, want REQUEST, RELEASE, DATA", ks)
		}
		wantLingerSends(t, mu, ft, "3")
	})
	t.Run("hello to a restarted peer", func(t *testing.T) {
		mu, ft := unlockHeld(t, func() Config { return Config{} })
		ft.feed(Message{Kind: PeerUp, From: "3", To: "1", Incarnation: 2})
		if ks := ft.kindsTo("3"); !slices.Equal(ks, []Kind{Request, Release}) {
			t.Fatalf("to 3 after its HELLO: %v, want REQUEST, RELEASE before it", ks)
		}
		rel := ft.sentTo("3", Release)[0]
		if rel.Incarnation != 1 {
			t.Errorf("the held RELEASE names incarnation %d of 3, want 1, the one it was for", rel.Incarnation)
		}
		ft.mu.Lock()
		hello, release := -1, -1
		for i, m := range ft.sent {
			switch {
			case m.To == "3" && m.Kind == Hello && m.Incarnation == 2:
				hello = i
			case m.To == "3" && m.Kind == Release:
				release = i
			}
		}
		ft.mu.Unlock()
		if hello < 0 || hello < release {
			t.Errorf("the HELLO to 3's new incarnation is at %d of what was sent, the RELEASE held for the old one at %d", hello, release)
		}
		wantLingerSends(t, mu, ft, "2")
		if err := mu.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// wantLingerSends plays mu's linger timer, which unlockHeld stopped, and
// checks that it sends the RELEASE still held for peer, alone.
func wantLingerSends(t *testing.T, mu *Mutex, ft *fakeTransport, peer string) {
	t.Helper()
	if ks := ft.kindsTo(peer); !slices.Equal(ks, []Kind{Request}) {
		t.Fatalf("to %s before the linger ends: %v, want its RELEASE still held", peer, ks)
	}
	mu.sendHeld()
	if ks := ft.lastCallTo(peer); !slices.Equal(ks, []Kind{Release}) {
		t.Errorf("to %s when the linger ends: %v, want the held RELEASE", peer, ks)
	}
}
