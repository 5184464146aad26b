// Package keyapitest holds what tests of the REST API of keys share: a
// wallet that signs account requests as the Pacifica SDK does.
package keyapitest

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"floodgate/keyapi"

	"github.com/mr-tron/base58"
)

// Wallet signs account requests like the Pacifica SDK.
type Wallet struct {
	Priv    ed25519.PrivateKey
	Account string // base58 of the public key
}

// NewWallet returns the wallet of a fixed seed (32 bytes of seed): the
// same seed, the same account.
func NewWallet(seed byte) *Wallet {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return &Wallet{Priv: priv, Account: base58.Encode(priv.Public().(ed25519.PublicKey))}
}

// Body returns a signed request body of typ at ts with the payload's
// fields at the top level (keyapi.SignRequest); window in milliseconds.
func (w *Wallet) Body(t testing.TB, typ string, payload map[string]any, ts time.Time, window int64) map[string]any {
	t.Helper()
	b, err := keyapi.SignRequest(w.Priv, typ, payload, ts.UnixMilli(), window)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
