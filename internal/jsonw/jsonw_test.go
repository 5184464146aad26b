package jsonw_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"floodgate/internal/jsonw"
)

func TestAppendStringRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "ctl\x00\x1f\n\r\t", "ünïcødé", "\u2028\u2029", "bad\xffutf8"} {
		out := jsonw.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
		}
		want := s
		if s == "bad\xffutf8" {
			want = "bad\ufffdutf8"
		}
		if back != want {
			t.Fatalf("%q -> %s -> %q", s, out, back)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\x00\"\\\u2028")
	f.Add("bad\xffutf8\xc3")
	f.Fuzz(func(t *testing.T, s string) {
		out := jsonw.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
		}
		// Round trip: the same text, each invalid UTF-8 byte as U+FFFD.
		if want := string([]rune(s)); back != want {
			t.Fatalf("%q -> %s -> %q, want %q", s, out, back, want)
		}
		// Safe inside JavaScript and a single line: no raw control
		// characters, U+2028 or U+2029.
		if bytes.ContainsAny(out, "\u2028\u2029") || bytes.IndexFunc(out, func(r rune) bool { return r < 0x20 }) >= 0 {
			t.Fatalf("%q -> %q holds a raw control or separator character", s, out)
		}
	})
}

func TestAppendStringNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = jsonw.AppendString(buf[:0], "unknown source \"x\"") }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}

func TestAppendBytesMatchesAppendString(t *testing.T) {
	for _, s := range []string{"a\u0007b", "x\"\u0001", "\xff\xfe", "plain"} {
		if got, want := string(jsonw.AppendBytes(nil, []byte(s))), string(jsonw.AppendString(nil, s)); got != want {
			t.Fatalf("%q: %s vs %s", s, got, want)
		}
	}
}
