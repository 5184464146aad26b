package auth_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"floodgate/keyapi"

	"github.com/mr-tron/base58"
)

var t0 = time.Date(2025, 5, 20, 12, 0, 0, 0, time.UTC)

// wallet signs requests like the Pacifica SDK.
type wallet struct {
	priv    ed25519.PrivateKey
	account string
}

func newWallet(seed byte) *wallet {
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(s)
	return &wallet{priv: priv, account: base58.Encode(priv.Public().(ed25519.PublicKey))}
}

// body returns a signed request body for typ with payload fields at the
// top level.
func (w *wallet) body(t testing.TB, typ string, payload map[string]any, ts time.Time, window int64) map[string]any {
	t.Helper()
	b, err := keyapi.SignRequest(w.priv, typ, payload, ts.UnixMilli(), window)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The account endpoints of BenchmarkAccountAPI_RevokedKeys.
const (
	pathCreate = "/api/v1/account/api_keys/create"
	pathList   = "/api/v1/account/api_keys"
)
