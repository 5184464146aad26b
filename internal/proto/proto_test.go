package proto_test

import (
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"floodgate/internal/proto"
)

// docCodes returns the first column of the table under "## Codes" in
// docs/protocol.md.
func docCodes(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Codes\n")
	if !ok {
		t.Fatal("docs/protocol.md has no ## Codes section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	out := map[string]bool{}
	for line := range strings.SplitSeq(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "code" {
			continue
		}
		out[strings.TrimSpace(cells[1])] = true
	}
	return out
}

// TestCodesDocumented: every code the node can send is in the one table of
// docs/protocol.md, and the table names no code that does not exist.
func TestCodesDocumented(t *testing.T) {
	doc := docCodes(t)
	known := map[string]bool{}
	for _, c := range proto.Codes {
		known[c] = true
		if !doc[c] {
			t.Errorf("code %s is missing from docs/protocol.md ## Codes", c)
		}
	}
	for c := range doc {
		if c[0] >= '0' && c[0] <= '9' {
			continue // close codes: TestCloseReasonsDocumented in package broker
		}
		if !known[c] {
			t.Errorf("docs/protocol.md lists %s, which proto.Codes does not have", c)
		}
	}
}

func TestRefusalWrite(t *testing.T) {
	r := &proto.Refusal{Status: 429, Code: proto.RateLimited, Message: "Rate limit exceeded: cooldown", RetryAfter: 1500e6,
		Policy: proto.PolicyHeader("cooldown", 0, 30e9), RateLimit: proto.RateLimitHeader("cooldown", 0, 1500e6)}
	w := httptest.NewRecorder()
	r.Write(w)
	if w.Code != 429 || w.Body.String() != `{"error":"Rate limit exceeded: cooldown","code":"RATE_LIMITED"}`+"\n" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	for k, want := range map[string]string{"Retry-After": "2", "RateLimit-Policy": `"cooldown";q=0;w=30`, "RateLimit": `"cooldown";r=0;t=2`, "Connection": "close"} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}
