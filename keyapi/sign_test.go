package keyapi_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mr-tron/base58"

	"floodgate/auth"
	"floodgate/keyapi"
)

type vector struct {
	Account      string          `json:"account"`
	Type         string          `json:"type"`
	Payload      json.RawMessage `json:"payload"`
	Timestamp    int64           `json:"timestamp"`
	ExpiryWindow int64           `json:"expiry_window"`
	Message      string          `json:"message"`
	Signature    string          `json:"signature"`
	RequestBody  json.RawMessage `json:"request_body"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/signing_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return f.Vectors
}

func decodeNumber(t testing.TB, s []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func payloadFields(typ string) []string {
	if typ == "revoke_api_key" {
		return []string{"api_key"}
	}
	return nil
}

func TestSigningVectors(t *testing.T) {
	for i, v := range loadVectors(t) {
		msg, err := keyapi.SigningMessage(v.Type, decodeNumber(t, v.Payload), v.Timestamp, v.ExpiryWindow)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != v.Message {
			t.Fatalf("vector %d: message\n got %s\nwant %s", i, msg, v.Message)
		}
		if err := keyapi.VerifyMessage(v.Account, v.Signature, msg); err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		// The same through the request body parser.
		req, err := keyapi.ParseSignedRequest(v.RequestBody, v.Type, payloadFields(v.Type)...)
		if err != nil {
			t.Fatalf("vector %d: parse body: %v", i, err)
		}
		if string(req.Message()) != v.Message || req.Verify() != nil {
			t.Fatalf("vector %d: body: message %s verify %v", i, req.Message(), req.Verify())
		}
		// A different type does not verify.
		other, _ := keyapi.ParseSignedRequest(v.RequestBody, v.Type+"x", payloadFields(v.Type)...)
		if !errors.Is(other.Verify(), keyapi.ErrInvalidSignature) {
			t.Fatalf("vector %d verified under another type", i)
		}

		// One changed byte anywhere makes it fail.
		for j := range msg {
			m := bytes.Clone(msg)
			m[j] ^= 0x01
			if err := keyapi.VerifyMessage(v.Account, v.Signature, m); !errors.Is(err, keyapi.ErrInvalidSignature) {
				t.Fatalf("vector %d: message byte %d changed: %v", i, j, err)
			}
		}
		sig, _ := base58.Decode(v.Signature)
		for j := range sig {
			s := bytes.Clone(sig)
			s[j] ^= 0x01
			if err := keyapi.VerifyMessage(v.Account, base58.Encode(s), msg); !errors.Is(err, keyapi.ErrInvalidSignature) {
				t.Fatalf("vector %d: signature byte %d changed: %v", i, j, err)
			}
		}
		pk, _ := base58.Decode(v.Account)
		for j := range pk {
			p := bytes.Clone(pk)
			p[j] ^= 0x01
			if err := keyapi.VerifyMessage(base58.Encode(p), v.Signature, msg); !errors.Is(err, keyapi.ErrInvalidSignature) {
				t.Fatalf("vector %d: account byte %d changed: %v", i, j, err)
			}
		}
	}
}

// Expected outputs from Python's json.dumps(v, sort_keys=True,
// separators=(",", ":"), ensure_ascii=True).
func TestAppendCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b": 1, "a": {"d": [3, {"z": 1, "y": null}], "c": true}}`, `{"a":{"c":true,"d":[3,{"y":null,"z":1}]},"b":1}`},
		{`{"api_key": "Zz9Yy8Xx_Ünïcødé"}`, `{"api_key":"Zz9Yy8Xx_\u00dcn\u00efc\u00f8d\u00e9"}`},
		{`{"s": "emoji 😀 and 𝄞"}`, `{"s":"emoji \ud83d\ude00 and \ud834\udd1e"}`},
		{`{"s": "emoji \ud83d\ude00"}`, `{"s":"emoji \ud83d\ude00"}`},
		{`{"s": "ctl \u0000\u0001\u001f` + "\x7f" + ` \b\f\n\r\t \" \\ / <>&"}`, `{"s":"ctl \u0000\u0001\u001f\u007f \b\f\n\r\t \" \\ / <>&"}`},
		{`{"é": 1, "e": 2, "z": 3, "É": 4, "😀": 5, "ｚ": 6}`, `{"e":2,"z":3,"\u00c9":4,"\u00e9":1,"\uff5a":6,"\ud83d\ude00":5}`},
		{`{"n": [0, -7, 12345678901234567890]}`, `{"n":[0,-7,12345678901234567890]}`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{`"plain"`, `"plain"`},
		{`false`, `false`},
	} {
		got, err := keyapi.AppendCanonicalJSON(nil, decodeNumber(t, []byte(tc.in)))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []any{1.5, struct{}{}, map[string]any{"x": []any{float32(1)}}, json.Number("1x")} {
		if _, err := keyapi.AppendCanonicalJSON(nil, bad); err == nil {
			t.Errorf("%#v accepted", bad)
		}
	}
}

func TestParseSignedRequest_Errors(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	acct := base58.Encode(pub)
	sig := base58.Encode(ed25519.Sign(priv, []byte("x")))
	for _, tc := range []struct {
		name, body string
		want       error
		field      string
	}{
		{"not json", `{`, keyapi.ErrBadJSON, ""},
		{"array", `[]`, keyapi.ErrBadJSON, ""},
		{"null", `null`, keyapi.ErrBadJSON, ""},
		{"trailing", `{"a":1} {}`, keyapi.ErrBadJSON, ""},
		{"no account", `{"signature":"` + sig + `","timestamp":1}`, auth.ErrInvalidField, "account"},
		{"null account", `{"account":null,"signature":"` + sig + `","timestamp":1}`, auth.ErrInvalidField, "account"},
		{"account type", `{"account":5,"signature":"` + sig + `","timestamp":1}`, auth.ErrInvalidField, "account"},
		{"no signature", `{"account":"` + acct + `","timestamp":1}`, auth.ErrInvalidField, "signature"},
		{"no timestamp", `{"account":"` + acct + `","signature":"` + sig + `"}`, auth.ErrInvalidField, "timestamp"},
		{"float timestamp", `{"account":"` + acct + `","signature":"` + sig + `","timestamp":1.5}`, auth.ErrInvalidField, "timestamp"},
		{"string timestamp", `{"account":"` + acct + `","signature":"` + sig + `","timestamp":"1"}`, auth.ErrInvalidField, "timestamp"},
		{"zero window", `{"account":"` + acct + `","signature":"` + sig + `","timestamp":1,"expiry_window":0}`, auth.ErrInvalidField, "expiry_window"},
		{"agent type", `{"account":"` + acct + `","signature":"` + sig + `","timestamp":1,"agent_wallet":3}`, auth.ErrInvalidField, "agent_wallet"},
		{"no payload field", `{"account":"` + acct + `","signature":"` + sig + `","timestamp":1}`, auth.ErrInvalidField, "api_key"},
		{"bad base58 account", `{"account":"0OIl","signature":"` + sig + `","timestamp":1,"api_key":"x"}`, keyapi.ErrInvalidPublicKey, ""},
		{"short account", `{"account":"abc","signature":"` + sig + `","timestamp":1,"api_key":"x"}`, keyapi.ErrInvalidPublicKey, ""},
		{"bad base58 sig", `{"account":"` + acct + `","signature":"0OIl","timestamp":1,"api_key":"x"}`, keyapi.ErrInvalidSignature, ""},
		{"short sig", `{"account":"` + acct + `","signature":"abc","timestamp":1,"api_key":"x"}`, keyapi.ErrInvalidSignature, ""},
	} {
		_, err := keyapi.ParseSignedRequest([]byte(tc.body), "revoke_api_key", "api_key")
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		var fe *auth.FieldError
		if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
			t.Errorf("%s: %v, want field %s", tc.name, err, tc.field)
		}
	}
}

func TestSignedRequest_CheckTime(t *testing.T) {
	now := time.UnixMilli(1716200000000)
	for _, tc := range []struct {
		ts, window int64
		ok         bool
	}{
		{now.UnixMilli(), 30000, true},
		{now.UnixMilli() - 30000, 30000, true}, // last valid ms
		{now.UnixMilli() - 30001, 30000, false},
		{now.UnixMilli() + 5000, 30000, true},
		{now.UnixMilli() + 5001, 30000, false},
	} {
		r := &keyapi.SignedRequest{Timestamp: tc.ts, ExpiryWindow: tc.window}
		err := r.CheckTime(now, keyapi.MaxFutureSkew)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, keyapi.ErrInvalidMessage)) {
			t.Errorf("ts %+d window %d: %v", tc.ts-now.UnixMilli(), tc.window, err)
		}
	}
}

func FuzzAppendCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"\u00e9😀"]}`, `"x"`, `[{"\u0000":{}}]`, `{"k":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		out, err := keyapi.AppendCanonicalJSON(nil, v)
		if err != nil {
			t.Fatalf("decoded JSON refused: %v", err)
		}
		for _, c := range out {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("non-printable-ASCII byte %#x in %q", c, out)
			}
		}
		// Canonical form is a fixed point.
		again, err := keyapi.AppendCanonicalJSON(nil, decodeNumber(t, out))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%s\n%s", out, again)
		}
	})
}

func FuzzParseSignedRequest(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add([]byte(v.RequestBody))
	}
	f.Add([]byte(`{"account":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := keyapi.ParseSignedRequest(body, "revoke_api_key", "api_key")
		if err != nil {
			return
		}
		if len(r.PublicKey) != ed25519.PublicKeySize || len(r.Sig) != ed25519.SignatureSize {
			t.Fatalf("accepted with key %d sig %d bytes", len(r.PublicKey), len(r.Sig))
		}
		if _, ok := r.Payload["api_key"]; !ok {
			t.Fatal("payload field missing")
		}
		_ = r.Verify()
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Signature)
	}
	f.Add("0OIl")
	f.Add("1111111111111111111111111111111111111111111111111111111111111111")
	// The oracle: a signature is exactly the base58 text of 64 bytes.
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := keyapi.ParseSignature(s)
		raw, derr := base58.Decode(s)
		want := derr == nil && len(raw) == ed25519.SignatureSize
		if (err == nil) != want {
			t.Fatalf("ParseSignature(%q): err %v, want accepted %v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, keyapi.ErrInvalidSignature) {
				t.Fatalf("ParseSignature(%q): %v, want ErrInvalidSignature", s, err)
			}
			return
		}
		if !bytes.Equal(sig, raw) {
			t.Fatalf("ParseSignature(%q) decoded %x, want %x", s, sig, raw)
		}
	})
}
