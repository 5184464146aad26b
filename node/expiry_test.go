package node_test

import (
	"strings"
	"testing"
	"time"

	"floodgate/keyapi"
	"floodgate/node"
)

// TestDefaultExpiryAndKeyExpiringOnConnect: keys.default_expiry sets
// expires_at on a new key that names none; a key expiring within
// keys.expiry_notice gets KEY_EXPIRING first thing after connecting; one
// expiring later gets nothing.
func TestDefaultExpiryAndKeyExpiringOnConnect(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{edit: func(f *node.File) { f.Keys.DefaultExpiry = 72 * time.Hour }})
	before := time.Now()
	k := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	if k.Key.ExpiresAt == nil || k.Key.ExpiresAt.Before(before.Add(72*time.Hour-time.Second)) || k.Key.ExpiresAt.After(time.Now().Add(72*time.Hour)) {
		t.Fatalf("expires_at %v, want now+72h", k.Key.ExpiresAt)
	}
	cl := n.dial(keyHeader(k.APIKey))
	want := `{"channel":"notice","data":{"code":"KEY_EXPIRING","expires_at":"` + k.Key.ExpiresAt.UTC().Format(time.RFC3339) + `","in_ms":`
	if got := cl.read(); !strings.HasPrefix(got, want) {
		t.Fatalf("first frame %s\nwant prefix %s", got, want)
	}
	later := time.Now().Add(30 * 24 * time.Hour)
	k2 := n.createKey(keyapi.CreateKeyRequest{Account: accountA, ExpiresAt: &later})
	cl2 := n.dial(keyHeader(k2.APIKey))
	cl2.roundTrip(`{"method":"ping"}`, `{"channel":"pong","rl":{"r":299,"q":300,"t":1}}`)
}
