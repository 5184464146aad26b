package keyapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/auth/storetest"
	"floodgate/keyapi"
	"floodgate/keyapi/keyapitest"
)

const adminToken = "s3cret-admin-token"

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (c *clock) Set(t time.Time)         { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// events records published control events.
type events struct {
	mu  sync.Mutex
	evs []auth.KeyEvent
}

func (e *events) Notify(_ context.Context, ev auth.KeyEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) take() []auth.KeyEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.evs
	e.evs = nil
	return out
}

type fixture struct {
	t       *testing.T
	store   auth.Store
	keyring *auth.Keyring
	clock   *clock
	events  *events
	h       *keyapi.Server
}

var t0 = time.Date(2025, 5, 20, 12, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, mod func(*keyapi.Options)) *fixture {
	return newFixtureOn(t, storetest.OpenBolt(t), mod)
}

func newFixtureOn(t *testing.T, store auth.Store, mod func(*keyapi.Options)) *fixture {
	f := &fixture{t: t, store: store, clock: &clock{t: t0}, events: &events{}}
	f.keyring = auth.NewKeyring(auth.KeyringOptions{Store: f.store})
	opts := keyapi.Options{Store: f.store, Keyring: f.keyring, Notifier: f.events, AdminToken: adminToken, Now: f.clock.Now}
	if mod != nil {
		mod(&opts)
	}
	h, err := keyapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

type response struct {
	status int
	header http.Header
	env    keyapi.Envelope
	raw    string
}

func (f *fixture) do(method, path string, body any, hdr map[string]string) response {
	f.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, rd)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		f.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	if path != "/openapi.json" {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.env); err != nil {
			f.t.Fatalf("%s %s: body %q: %v", method, path, res.raw, err)
		}
	}
	return res
}

func (f *fixture) admin(method, path string, body any) response {
	f.t.Helper()
	return f.do(method, path, body, map[string]string{"Authorization": "Bearer " + adminToken})
}

// wantError checks an error answer exactly.
func wantError(t *testing.T, r response, status int, code, msg string) {
	t.Helper()
	if r.status != status || r.env.Success || r.env.Code == nil || *r.env.Code != code ||
		r.env.Error == nil || *r.env.Error != msg || string(r.env.Data) != "null" {
		t.Fatalf("got %d %s\nwant %d code %q error %q", r.status, r.raw, status, code, msg)
	}
}

// wantOK checks a success answer and decodes its data into v.
func wantOK(t *testing.T, r response, status int, v any) {
	t.Helper()
	if r.status != status || !r.env.Success || r.env.Error != nil || r.env.Code != nil {
		t.Fatalf("got %d %s, want %d success", r.status, r.raw, status)
	}
	if v != nil {
		if err := json.Unmarshal(r.env.Data, v); err != nil {
			t.Fatal(err)
		}
	}
}

// wallet signs requests like the Pacifica SDK.
type wallet = keyapitest.Wallet

func newWallet(seed byte) *wallet { return keyapitest.NewWallet(seed) }
