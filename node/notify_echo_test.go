package node

import (
	"testing"
	"time"

	"floodgate/auth"
)

// TestOwnEchoSkippedOnce: an event this node published comes back from
// NATS once and is skipped then; a second identical event (another node's)
// is applied, and so is an echo later than echoWindow.
func TestOwnEchoSkippedOnce(t *testing.T) {
	n := &notifier{echoes: make(map[auth.KeyEvent][]time.Time)}
	ev := auth.KeyEvent{Type: auth.EventUpdated, Prefix: "AbCdEfGh"}
	now := time.Now()
	n.expectEcho(ev, now)
	if !n.ownEcho(ev, now.Add(time.Millisecond)) {
		t.Fatal("own echo not recognised")
	}
	if n.ownEcho(ev, now.Add(2*time.Millisecond)) {
		t.Fatal("a second identical event was taken for the echo")
	}
	n.expectEcho(ev, now)
	if n.ownEcho(ev, now.Add(echoWindow+time.Millisecond)) {
		t.Fatal("an event after the echo window was skipped")
	}
	if len(n.echoes) != 0 {
		t.Fatalf("echoes left: %v", n.echoes)
	}
	other := auth.KeyEvent{Type: auth.EventRevoked, Prefix: "AbCdEfGh", Reason: auth.ReasonRevoked}
	n.expectEcho(ev, now)
	if n.ownEcho(other, now) {
		t.Fatal("a different event was taken for the echo")
	}
}
