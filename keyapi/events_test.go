package keyapi_test

import (
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"
	"floodgate/internal/testdeps"
	"floodgate/keyapi"
)

// A revoke through the sidecar reaches another node's Keyring over NATS.
func TestEvents_SidecarToKeyring(t *testing.T) {
	url := testdeps.EmbeddedNATS(t)
	store := storetest.OpenBolt(t)
	ringB := auth.NewKeyring(auth.KeyringOptions{Store: store})
	nodeB := testdeps.Connect(t, url)
	invalidated := make(chan string, 10)
	stop, err := auth.SubscribeEvents(nodeB, func(ev auth.KeyEvent) {
		ringB.HandleEvent(ev)
		invalidated <- ev.Prefix
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	g, _ := keyapi.New(keyapi.Options{Store: store, Notifier: auth.NewNATSNotifier(testdeps.Connect(t, url)), AdminToken: adminToken, Now: func() time.Time { return t0 }})
	key := storetest.AddKey(t, store, newWallet(1).Account, t0, nil)
	if _, err := ringB.Verify(key, t0); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{t: t, h: g, store: store, clock: &clock{t: t0}, events: &events{}}
	wantOK(t, fx.admin("PATCH", "/admin/v1/keys/"+key[:8], `{"active":false}`), 200, nil)
	select {
	case p := <-invalidated:
		if p != key[:8] {
			t.Fatalf("invalidated %s", p)
		}
	case <-time.After(time.Second):
		t.Fatal("no event within 1 s")
	}
	if _, err := ringB.Verify(key, t0); err != auth.ErrInactiveKey {
		t.Fatalf("node B after deactivate: %v", err)
	}
}
