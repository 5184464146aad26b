package auth_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"floodgate/auth"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	counts := map[byte]int{}
	for i := 0; i < 2000; i++ {
		key, prefix, err := auth.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p, err := auth.ParseKey(key)
		if err != nil || p != prefix || len(prefix) != auth.PrefixLen || key[8] != '_' || len(key) > auth.MaxKeyLen || len(key) < 9+20 {
			t.Fatalf("Generate: %q %q %v", key, prefix, err)
		}
		if seen[prefix] {
			t.Fatalf("prefix %s repeated", prefix)
		}
		seen[prefix] = true
		for j := 0; j < len(prefix); j++ {
			counts[prefix[j]]++
		}
	}
	if len(counts) != 58 {
		t.Fatalf("prefixes use %d of 58 characters", len(counts))
	}
	// Deterministic from a fixed reader; errors from the reader surface.
	k1, _, _ := auth.Generate(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	k2, _, _ := auth.Generate(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if k1 != k2 || k1 != "88888888_"+k1[9:] {
		t.Fatalf("fixed reader: %q %q", k1, k2)
	}
	if _, _, err := auth.Generate(iotest.ErrReader(errors.New("no entropy"))); err == nil {
		t.Fatal("reader error ignored")
	}
	if _, _, err := auth.Generate(bytes.NewReader(bytes.Repeat([]byte{255}, 100))); err == nil {
		t.Fatal("short reader accepted") // all bytes rejected by sampling, then EOF
	}
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "AbCdEfGh", "AbCdEfGh_", "AbCdEfG_x2", "AbCdEfGh-2mT8x", "AbCdEf0h_2mT8x", "AbCdEfGh_2mT8x0",
		"AbCdEfGh_" + strings.Repeat("2", 23), "AbCdEfGh_2mT8_x", "ÄbCdEfGh_2mT8x"} {
		if _, err := auth.ParseKey(bad); !errors.Is(err, auth.ErrMalformedKey) {
			t.Errorf("ParseKey(%q) = %v", bad, err)
		}
	}
	p, err := auth.ParseKey("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ")
	if err != nil || p != "AbCdEfGh" {
		t.Fatalf("%q %v", p, err)
	}
}

func TestParseKeyAndHashAllocs(t *testing.T) {
	key := "AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ"
	if n := testing.AllocsPerRun(100, func() { _, _ = auth.ParseKey(key) }); n != 0 {
		t.Fatalf("ParseKey allocates %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = auth.Hash(key) }); n != 0 {
		t.Fatalf("Hash allocates %v", n)
	}
}

func TestKeyHash(t *testing.T) {
	a, b := auth.Hash("AbCdEfGh_x"), auth.Hash("AbCdEfGh_y")
	if !a.Equal(a) || a.Equal(b) {
		t.Fatal("Equal")
	}
	j, _ := json.Marshal(a)
	var back auth.KeyHash
	if err := json.Unmarshal(j, &back); err != nil || back != a || len(j) != 66 {
		t.Fatalf("round trip %s: %v", j, err)
	}
	for _, bad := range []string{`"abc"`, `"` + strings.Repeat("g", 64) + `"`} {
		if json.Unmarshal([]byte(bad), &back) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	long := strings.Repeat("x", 100)
	if auth.Hash(long) == auth.Hash(long[:99]) {
		t.Fatal("long keys")
	}
}

// FuzzParseKey: ParseKey accepts exactly what the key format says.
func FuzzParseKey(f *testing.F) {
	f.Add("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1cZ")
	f.Add("short")
	f.Add("AbCdEfGh_" + strings.Repeat("z", 22))
	f.Add("AbCdEfGh_2mT8xQ9wY3kP7vN5rL1c0")
	// The oracle: the key format's regular expression, independent of the
	// parser (8 base58 characters, "_", 1..22 base58 characters).
	format := regexp.MustCompile(`^[1-9A-HJ-NP-Za-km-z]{8}_[1-9A-HJ-NP-Za-km-z]{1,22}$`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := auth.ParseKey(s)
		if (err == nil) != format.MatchString(s) {
			t.Fatalf("ParseKey(%q): err %v, but the format says %v", s, err, format.MatchString(s))
		}
		if err != nil {
			return
		}
		if p != s[:auth.PrefixLen] || !auth.ValidPrefix(p) {
			t.Fatalf("ParseKey(%q) = %q", s, p)
		}
	})
}
