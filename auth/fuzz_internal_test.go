package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzCheckCursor: a client's cursor is accepted exactly when it is empty
// or the sort key of some record (creation time and prefix), and a
// record's own sort key is always accepted and decodes back to it.
func FuzzCheckCursor(f *testing.F) {
	f.Add("", int64(0), "Pre11111")
	f.Add("8000000000000000:Pre11111", int64(1747735200000000), "AbCdEfGh")
	f.Add("nope", int64(-1), "bad_0OIl")
	f.Add("FFFFFFFFFFFFFFFF:AbCdEfGh", int64(1<<62), "zzzzzzzz")
	f.Fuzz(func(t *testing.T, c string, us int64, prefix string) {
		err := CheckCursor(c)
		if c == "" && err != nil {
			t.Fatal("empty cursor refused")
		}
		if err == nil && c != "" {
			h, p, ok := strings.Cut(c, ":")
			if !ok || len(h) != 16 || !ValidPrefix(p) || strings.ToLower(h) != h {
				t.Fatalf("accepted %q", c)
			}
		}
		if !ValidPrefix(prefix) {
			return
		}
		r := Record{Prefix: prefix, CreatedAt: time.UnixMicro(us)}
		sk := sortKey(&r)
		if err := CheckCursor(sk); err != nil {
			t.Fatalf("sort key %q of a record refused: %v", sk, err)
		}
		if prefixOfMember(sk) != prefix {
			t.Fatalf("sort key %q does not end with its prefix %q", sk, prefix)
		}
		// Order: a later record sorts after.
		later := Record{Prefix: prefix, CreatedAt: r.CreatedAt.Add(time.Microsecond)}
		if us < 1<<62 && sortKey(&later) <= sk {
			t.Fatalf("%q does not sort after %q", sortKey(&later), sk)
		}
	})
}
