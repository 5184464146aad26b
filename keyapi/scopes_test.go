package keyapi_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/internal/proto"
	"floodgate/keyapi"
)

// TestScopesAndCIDRs_Admin: the operator API stores scopes and
// allowed_cidrs on create, returns them, changes and resets them on PATCH
// (a change publishes a key event).
func TestScopesAndCIDRs_Admin(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).Account
	created := f.adminCreate(`{"account":"` + acct + `","scopes":["market"],"allowed_cidrs":["10.9.8.7/8","::1"]}`)
	if !reflect.DeepEqual(created.Key.Scopes, []string{"market"}) || !reflect.DeepEqual(created.Key.AllowedCIDRs, []string{"10.0.0.0/8", "::1/128"}) {
		t.Fatalf("created %+v", created.Key)
	}
	rec, err := f.store.Get(context.Background(), created.Key.Prefix)
	if err != nil || rec.Scopes != proto.ScopeMarket || rec.AllowedCIDRs != "10.0.0.0/8,::1/128" {
		t.Fatalf("stored %+v %v", rec, err)
	}
	p := "/admin/v1/keys/" + created.Key.Prefix
	var v keyapi.KeyView
	wantOK(t, f.admin("PATCH", p, `{"scopes":["account"],"allowed_cidrs":[]}`), 200, &v)
	if !reflect.DeepEqual(v.Scopes, []string{"account"}) || len(v.AllowedCIDRs) != 0 {
		t.Fatalf("patched %+v", v)
	}
	if evs := f.events.take(); len(evs) != 1 || evs[0].Type != auth.EventUpdated {
		t.Fatalf("events %+v", evs)
	}
	wantOK(t, f.admin("PATCH", p, `{"scopes":[]}`), 200, &v)
	if !reflect.DeepEqual(v.Scopes, []string{"market", "account"}) {
		t.Fatalf("reset scopes %+v", v.Scopes)
	}
	// Default: both, any IP.
	d := f.adminCreate(`{"account":"` + acct + `"}`)
	if !reflect.DeepEqual(d.Key.Scopes, []string{"market", "account"}) || len(d.Key.AllowedCIDRs) != 0 {
		t.Fatalf("default %+v", d.Key)
	}
}

// TestAccount_CreateWithScopes: an account holder narrows a key's scopes
// in the signed payload; the scopes are part of what is signed (changing
// them breaks the signature); a create without scopes (the unmodified
// python-sdk call) still gets both.
func TestAccount_CreateWithScopes(t *testing.T) {
	f := newFixture(t, nil)
	w := newWallet(1)
	f.clock.Advance(time.Millisecond)
	var data struct {
		APIKey string `json:"api_key"`
	}
	wantOK(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, map[string]any{"scopes": []any{"market"}}, f.clock.Now(), 5000), nil), 200, &data)
	prefix, _ := auth.ParseKey(data.APIKey)
	rec, err := f.store.Get(context.Background(), prefix)
	if err != nil || rec.Scopes != proto.ScopeMarket {
		t.Fatalf("stored %+v %v", rec, err)
	}
	// Tampered: signed with ["market"], sent with ["market","account"].
	f.clock.Advance(time.Millisecond)
	b := w.Body(t, keyapi.TypeCreateAPIKey, map[string]any{"scopes": []any{"market"}}, f.clock.Now(), 5000)
	b["scopes"] = []any{"market", "account"}
	wantError(t, f.do("POST", pathCreate, b, nil), 400, "INVALID_SIGNATURE", "Invalid signature")
	// Bad values, signed.
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, map[string]any{"scopes": []any{"trade"}}, f.clock.Now(), 5000), nil),
		400, "BAD_REQUEST", `Invalid field scopes: must be "market" and/or "account"`)
	f.clock.Advance(time.Millisecond)
	wantError(t, f.do("POST", pathCreate, w.Body(t, keyapi.TypeCreateAPIKey, map[string]any{"scopes": "market"}, f.clock.Now(), 5000), nil),
		400, "BAD_REQUEST", "Invalid field scopes: must be a list")
	// Without scopes: both.
	key := f.createKey(w)
	prefix, _ = auth.ParseKey(key)
	if rec, _ := f.store.Get(context.Background(), prefix); rec.Scopes.Effective() != proto.AllScopes {
		t.Fatalf("default scopes %v", rec.Scopes)
	}
	// The account list shows them.
	var list keyapi.AccountKeys
	f.clock.Advance(time.Millisecond)
	wantOK(t, f.do("POST", pathList, w.Body(t, keyapi.TypeListAPIKeys, nil, f.clock.Now(), 30000), nil), 200, &list)
	if len(list.Keys) != 2 || !reflect.DeepEqual(list.Keys[0].Scopes, []string{"market"}) || len(list.Keys[1].Scopes) != 2 {
		t.Fatalf("list %+v", list.Keys)
	}
}
