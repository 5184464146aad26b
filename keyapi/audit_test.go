package keyapi_test

import (
	"fmt"
	"strings"
	"testing"

	"floodgate/keyapi"
)

// TestAdmin_Audit: every operator action on a key is in the audit log,
// newest first, with the token id, the IP and what changed; the full key
// never is.
func TestAdmin_Audit(t *testing.T) {
	f := newFixture(t, nil)
	acct := newWallet(1).Account
	ck := f.adminCreate(`{"account":"` + acct + `","alias":"bot","limits":{"credits_per_minute":100}}`)
	p := ck.Key.Prefix
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+p, `{"limits":{"credits_per_minute":600},"category":"prod"}`), 200, nil)
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+p, `{"limits":{"credits_per_minute":600}}`), 200, nil) // no change: no entry
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+p, `{"active":false}`), 200, nil)
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+p, `{"active":true}`), 200, nil)
	var rot keyapi.CreatedKey
	wantOK(t, f.admin("POST", "/admin/v1/keys/"+p+"/rotate", `{}`), 201, &rot)
	wantOK(t, f.admin("PATCH", "/admin/v1/keys/"+p, `{"status":"revoked"}`), 200, nil)
	other := f.adminCreate(`{"account":"` + acct + `","active":false}`)
	wantOK(t, f.admin("DELETE", "/admin/v1/keys/"+other.Key.Prefix, nil), 200, nil)
	// Refused actions are not recorded.
	f.admin("PATCH", "/admin/v1/keys/"+p, `{"active":true}`)
	f.admin("POST", "/admin/v1/keys", `{"account":"nope"}`)

	var list keyapi.AuditList
	r := f.admin("GET", "/admin/v1/audit", nil)
	wantOK(t, r, 200, &list)
	for _, secret := range []string{ck.APIKey, rot.APIKey, adminToken} {
		if strings.Contains(r.raw, secret) {
			t.Fatalf("the audit log holds a secret: %s", r.raw)
		}
	}
	var got []string
	for _, e := range list.Entries {
		got = append(got, e.Action+" "+e.Prefix)
		if e.TokenID != keyapi.TokenID(adminToken) || !strings.HasPrefix(e.TokenID, "sha256:") || e.IP != "192.0.2.1" || e.Time.IsZero() {
			t.Errorf("entry %+v: token id, ip or time", e)
		}
	}
	want := []string{"delete " + other.Key.Prefix, "create " + other.Key.Prefix, "revoke " + p, "rotate " + p,
		"activate " + p, "deactivate " + p, "update " + p, "create " + p}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("audit log\n got %v\nwant %v", got, want)
	}
	upd := list.Entries[6]
	if c := upd.Changes["limits.credits_per_minute"]; c.From != float64(100) || c.To != float64(600) {
		t.Errorf("update changes %+v", upd.Changes)
	}
	if c := upd.Changes["category"]; c.From != nil || c.To != "prod" || len(upd.Changes) != 2 {
		t.Errorf("update changes %+v", upd.Changes)
	}
	if c := list.Entries[2].Changes["status"]; c.From != "active" || c.To != "revoked" {
		t.Errorf("revoke changes %+v", list.Entries[2].Changes)
	}
	if list.Entries[3].Detail != "rotated to "+rot.Key.Prefix {
		t.Errorf("rotate detail %q", list.Entries[3].Detail)
	}
	if c := list.Entries[7].Changes["alias"]; c.To != "bot" || list.Entries[7].Account != acct {
		t.Errorf("create entry %+v", list.Entries[7])
	}

	// Pages and the prefix filter.
	var page keyapi.AuditList
	wantOK(t, f.admin("GET", "/admin/v1/audit?limit=4", nil), 200, &page)
	if len(page.Entries) != 4 || page.NextCursor == nil {
		t.Fatalf("page 1: %+v", page)
	}
	var page2 keyapi.AuditList
	wantOK(t, f.admin("GET", "/admin/v1/audit?limit=4&cursor="+*page.NextCursor, nil), 200, &page2)
	if len(page2.Entries) != 4 || page2.Entries[0].ID != page.Entries[3].ID-1 {
		t.Fatalf("page 2: %+v", page2)
	}
	var mine keyapi.AuditList
	wantOK(t, f.admin("GET", "/admin/v1/audit?prefix="+p, nil), 200, &mine)
	if len(mine.Entries) != 6 || mine.NextCursor != nil {
		t.Fatalf("prefix filter: %d entries", len(mine.Entries))
	}
	for q, msg := range map[string]string{"limit=0": "Invalid field limit: must be 1..1000", "cursor=x": "Invalid field cursor: malformed",
		"prefix=0OIl0OIl": "Invalid field prefix: malformed"} {
		wantError(t, f.admin("GET", "/admin/v1/audit?"+q, nil), 400, "BAD_REQUEST", msg)
	}
	wantError(t, f.do("GET", "/admin/v1/audit", nil, nil), 401, "UNAUTHORIZED", "Invalid admin token")
}

// TestAdmin_ListSearch: q= matches a substring of the account, alias,
// prefix or category, case-insensitively.
func TestAdmin_ListSearch(t *testing.T) {
	f := newFixture(t, nil)
	a, b := newWallet(1).Account, newWallet(2).Account
	k1 := f.adminCreate(`{"account":"` + a + `","alias":"Market-Maker","category":"production"}`)
	k2 := f.adminCreate(`{"account":"` + b + `","alias":"bot","category":"staging"}`)
	search := func(q string) string {
		var l keyapi.KeyList
		wantOK(t, f.admin("GET", "/admin/v1/keys?q="+q, nil), 200, &l)
		var out []string
		for _, k := range l.Keys {
			out = append(out, k.Prefix)
		}
		return fmt.Sprint(out)
	}
	for q, want := range map[string][]string{
		"maker": {k1.Key.Prefix}, "STAGING": {k2.Key.Prefix}, b[:10]: {k2.Key.Prefix},
		k1.Key.Prefix[:6]: {k1.Key.Prefix}, "": {k1.Key.Prefix, k2.Key.Prefix}, "nothing-like-it": nil,
	} {
		if got := search(q); got != fmt.Sprint(want) {
			t.Errorf("q=%q: %s, want %v", q, got, want)
		}
	}
}
