package keyapi_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/keyapi"
)

func TestAdminClient(t *testing.T) {
	f := newFixture(t, nil)
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	c := keyapi.NewAdminClient(srv.URL+"/", adminToken, srv.Client())
	ctx := context.Background()
	acct := newWallet(1).Account
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ck, err := c.CreateKey(ctx, keyapi.CreateKeyRequest{Account: acct, Alias: "bot", Category: "prod", ExpiresAt: &exp,
		Limits: &auth.Limits{CreditsPerMinute: 500}, Quotas: &auth.Quotas{Daily: 10}})
	if err != nil || ck.APIKey == "" || ck.Key.Alias != "bot" || ck.Key.Limits.CreditsPerMinute != 500 {
		t.Fatalf("create: %+v %v", ck, err)
	}
	p := ck.Key.Prefix
	keys, err := c.ListKeys(ctx, acct, "prod", "active")
	if err != nil || len(keys) != 1 || keys[0].Prefix != p {
		t.Fatalf("list: %+v %v", keys, err)
	}
	if keys, _ := c.ListKeys(ctx, "", "", "inactive"); len(keys) != 0 {
		t.Fatalf("list inactive: %+v", keys)
	}
	if v, err := c.GetKey(ctx, p); err != nil || v.Prefix != p {
		t.Fatalf("get: %+v %v", v, err)
	}
	no := false
	if v, err := c.PatchKey(ctx, p, keyapi.KeyPatch{Active: &no}); err != nil || v.Status != "inactive" {
		t.Fatalf("deactivate: %+v %v", v, err)
	}
	if v, err := c.PatchKey(ctx, p, keyapi.KeyPatch{ExpiresAt: keyapi.OptionalTime{Set: true}}); err != nil || v.ExpiresAt != nil || v.Status != "inactive" {
		t.Fatalf("clear expiry: %+v %v", v, err)
	}
	rot, err := c.RotateKey(ctx, p, "bot-2")
	if err != nil || rot.RotatedFrom != p || rot.Key.Alias != "bot-2" {
		t.Fatalf("rotate: %+v %v", rot, err)
	}
	_ = f.store.AppendEvent(ctx, p, auth.Event{Time: t0, IP: "1.2.3.4"})
	if evs, err := c.KeyEvents(ctx, p, 10); err != nil || len(evs) != 1 || evs[0].IP != "1.2.3.4" {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if err := c.DeleteKey(ctx, rot.Key.Prefix); err != nil {
		t.Fatal(err)
	}
	var ae *keyapi.APIError
	if err := c.DeleteKey(ctx, rot.Key.Prefix); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "API_KEY_NOT_FOUND" || ae.Message != "API key not found" {
		t.Fatalf("delete twice: %v", err)
	}
	bad := keyapi.NewAdminClient(srv.URL, "wrong", nil)
	if _, err := bad.ListKeys(ctx, "", "", ""); !errors.As(err, &ae) || ae.Status != 401 || err.Error() != "Invalid admin token (HTTP 401 UNAUTHORIZED)" {
		t.Fatalf("wrong token: %v", err)
	}
	notAPI := httptest.NewServer(nil) // plain 404 page
	defer notAPI.Close()
	if _, err := keyapi.NewAdminClient(notAPI.URL, "", nil).ListKeys(ctx, "", "", ""); !errors.As(err, &ae) || ae.Code != "BAD_RESPONSE" {
		t.Fatalf("not an API: %v", err)
	}
}
