package keyapi

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/mr-tron/base58"
)

// FuzzParseAllowList: an accepted allow list holds only wallet addresses
// (base58 ed25519 public keys), one per non-comment line, and writing it
// back one per line parses to the same set.
func FuzzParseAllowList(f *testing.F) {
	pk := base58.Encode(make([]byte, ed25519.PublicKeySize))
	f.Add("# wallets\n" + pk + "\n\n")
	f.Add(pk + "\r\n  " + pk + "  \n")
	f.Add("nonsense\n")
	f.Fuzz(func(t *testing.T, in string) {
		set, err := parseAllowList([]byte(in))
		if err != nil {
			return
		}
		var out strings.Builder
		for a := range set {
			b, err := base58.Decode(a)
			if err != nil || len(b) != ed25519.PublicKeySize {
				t.Fatalf("accepted %q", a)
			}
			out.WriteString(a + "\n")
		}
		again, err := parseAllowList([]byte(out.String()))
		if err != nil || len(again) != len(set) {
			t.Fatalf("round trip: %v, %d vs %d", err, len(again), len(set))
		}
	})
}
