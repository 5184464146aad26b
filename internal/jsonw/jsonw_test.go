package jsonw_test

import (
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
	f.Fuzz(func(t *testing.T, s string) {
		out := jsonw.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
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
