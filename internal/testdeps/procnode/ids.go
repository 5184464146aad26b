package procnode

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"

	"github.com/mr-tron/base58"
)

// RandomToken returns n random bytes in hex: subject prefixes, run tags
// and namespaces that keep runs apart.
func RandomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return hex.EncodeToString(b)
}

// NewAccount returns the base58 public key of a fresh random wallet, so
// every run creates keys of its own account.
func NewAccount() string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return base58.Encode(pub)
}
