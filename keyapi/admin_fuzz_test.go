package keyapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"floodgate/auth"
	"floodgate/keyapi"
)

// FuzzAdminBodies sends arbitrary bodies to the operator API's create and
// PATCH endpoints. Properties: the answer is never a 500, always the JSON
// envelope with success matching the status; a create that succeeds made
// a key whose view says what the body asked (its account) and that the
// store can read back; a refused request changed nothing stored.
func FuzzAdminBodies(f *testing.F) {
	for _, s := range []string{
		`{"account":"FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF","alias":"a","category":"c","limits":{"credits_per_minute":600},"quotas":{"daily":5}}`,
		`{"account":"FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF","expires_at":"2031-01-02T03:04:05Z","active":false}`,
		`{"account":"x"}`, `{"limits":{"credits_per_minute":"lots"}}`, `[1]`, `{"account":null}`, ``, `{"status":"revoked"}`,
		`{"expires_at":null,"alias":"","limits":{"max_connections":-1}}`, `{"quotas":{"total":1e40}}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	store, err := auth.OpenBolt(f.TempDir(), auth.BoltOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	h, err := keyapi.New(keyapi.Options{Store: store, AdminToken: adminToken})
	if err != nil {
		f.Fatal(err)
	}
	do := func(method, path string, body []byte) (int, keyapi.Envelope, error) {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var env keyapi.Envelope
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			return w.Code, env, fmt.Errorf("%s %s %q: answer is not the JSON envelope: %v %q", method, path, body, err, w.Body)
		}
		if w.Code >= 500 {
			return w.Code, env, fmt.Errorf("%s %s %q: %d %s", method, path, body, w.Code, w.Body)
		}
		if env.Success != (w.Code < 300) {
			return w.Code, env, fmt.Errorf("%s %s %q: %d with success %v", method, path, body, w.Code, env.Success)
		}
		return w.Code, env, nil
	}
	// One key to PATCH.
	_, env, err := do("POST", "/admin/v1/keys", []byte(`{"account":"FAe4sisG95oZ42w7buUn5qEE4TAnfTTFPiguZUHmhiF"}`))
	if err != nil {
		f.Fatal(err)
	}
	var target keyapi.CreatedKey
	if err := json.Unmarshal(env.Data, &target); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, patch bool) {
		if patch {
			before, _ := store.Get(t.Context(), target.Key.Prefix)
			code, _, err := do("PATCH", "/admin/v1/keys/"+target.Key.Prefix, body)
			if err != nil {
				t.Fatal(err)
			}
			after, err := store.Get(t.Context(), target.Key.Prefix)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusOK && !recordsEqual(before, after) {
				t.Fatalf("refused PATCH %q (%d) changed the record", body, code)
			}
			return
		}
		code, env, err := do("POST", "/admin/v1/keys", body)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusCreated {
			return
		}
		var ck keyapi.CreatedKey
		if err := json.Unmarshal(env.Data, &ck); err != nil {
			t.Fatal(err)
		}
		var req keyapi.CreateKeyRequest
		_ = json.Unmarshal(body, &req)
		rec, err := store.Get(t.Context(), ck.Key.Prefix)
		if err != nil || rec.Account != req.Account || ck.Key.Account != req.Account || !strings.HasPrefix(ck.APIKey, ck.Key.Prefix+"_") {
			t.Fatalf("created %+v from %q: stored %+v %v", ck.Key, body, rec, err)
		}
	})
}

func recordsEqual(a, b auth.Record) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}
