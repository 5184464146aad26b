package auth_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/internal/testdeps"
)

func TestEvents_NATS(t *testing.T) {
	url := testdeps.EmbeddedNATS(t)
	pub, subA, subB := testdeps.Connect(t, url), testdeps.Connect(t, url), testdeps.Connect(t, url)
	got := make(chan auth.KeyEvent, 10)
	stopA, err := auth.SubscribeEvents(subA, func(ev auth.KeyEvent) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	gotB := make(chan auth.KeyEvent, 10)
	stopB, err := auth.SubscribeEvents(subB, func(ev auth.KeyEvent) { gotB <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	n := auth.NewNATSNotifier(pub)
	want := auth.KeyEvent{Type: auth.EventRevoked, Prefix: "AbCdEfGh", Reason: auth.ReasonRevoked}
	if err := n.Notify(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan auth.KeyEvent{got, gotB} {
		select {
		case ev := <-ch:
			if ev != want || !ev.Closes() {
				t.Fatalf("got %+v", ev)
			}
		case <-time.After(time.Second):
			t.Fatal("event not delivered within 1 s")
		}
	}
	// Malformed messages are dropped; the wire format is the JSON of KeyEvent.
	_ = pub.Publish(auth.ControlSubject, []byte(`not json`))
	_ = pub.Publish(auth.ControlSubject, []byte(`{"type":"revoked"}`))
	_ = pub.Publish(auth.ControlSubject, []byte(`{"type":"updated","prefix":"Zz9Yy8Xx"}`))
	_ = pub.Flush()
	select {
	case ev := <-got:
		if ev != (auth.KeyEvent{Type: auth.EventUpdated, Prefix: "Zz9Yy8Xx"}) || ev.Closes() {
			t.Fatalf("got %+v", ev)
		}
	case <-time.After(time.Second):
		t.Fatal("event not delivered")
	}
	// After stop, fn is never called again.
	stopA()
	_ = n.Notify(context.Background(), want)
	select {
	case <-gotB:
	case <-time.After(time.Second):
		t.Fatal("B stopped receiving")
	}
	// B got it, so the server delivered it; A's handler, stopped, must not
	// run: give a late delivery time to show up.
	select {
	case ev := <-got:
		t.Fatalf("stopped subscriber got %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// FuzzDecodeKeyEvent: an accepted control event has a known type and a
// well-formed prefix, and encodes back to an event that decodes the same.
func FuzzDecodeKeyEvent(f *testing.F) {
	for _, s := range []string{`{"type":"revoked","prefix":"AbCdEfGh","reason":"api key revoked"}`, `{"type":"updated","prefix":"Zz9Yy8Xx"}`,
		`{"type":"revoked"}`, `not json`, `{"type":"nuked","prefix":"AbCdEfGh"}`, `{"type":"expired","prefix":"AbCdEfG0"}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, ok := auth.DecodeKeyEvent(b)
		if !ok {
			return
		}
		if !auth.ValidPrefix(ev.Prefix) {
			t.Fatalf("accepted prefix %q", ev.Prefix)
		}
		switch ev.Type {
		case auth.EventRevoked, auth.EventDeactivated, auth.EventExpired, auth.EventUpdated:
		default:
			t.Fatalf("accepted type %q", ev.Type)
		}
		out, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if again, ok := auth.DecodeKeyEvent(out); !ok || again != ev {
			t.Fatalf("round trip of %+v: %+v %v", ev, again, ok)
		}
	})
}
