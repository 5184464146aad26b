// Package storetest is the conformance suite every auth.Store
// implementation passes: the bbolt and Redis stores run it in their tests;
// OpenBolt and OpenMiniredis are the store openers the tests share.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/internal/proto"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Opener returns a new, empty store for one subtest; it registers its own
// cleanup with t.
type Opener func(t *testing.T) auth.Store

// T0 is the fixed time the suite's records are created at.
var T0 = time.Date(2025, 5, 20, 10, 0, 0, 0, time.UTC)

// NewRecord returns a valid active record with a prefix derived from n.
func NewRecord(account string, n int) auth.Record {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	p := []byte("Pre11111")
	for i, v := 7, n; i >= 3 && v > 0; i, v = i-1, v/58 {
		p[i] = alphabet[v%58]
	}
	key := string(p) + "_secret" + fmt.Sprint(n)
	return auth.Record{
		Prefix:    key[:auth.PrefixLen],
		Hash:      auth.Hash(key),
		Account:   account,
		Status:    auth.StatusActive,
		CreatedAt: T0.Add(time.Duration(n) * time.Second),
	}
}

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, auth.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"CreateInvalid", testCreateInvalid},
		{"MaxActive", testMaxActive},
		{"MaxActiveConcurrent", testMaxActiveConcurrent},
		{"Alias", testAlias},
		{"List", testList},
		{"Update", testUpdate},
		{"UpdateLimits", testUpdateLimits},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Delete", testDelete},
		{"AddUsage", testAddUsage},
		{"AddUsageMetered", testAddUsageMetered},
		{"Events", testEvents},
		{"AppendEvents", testAppendEvents},
		{"Signatures", testSignatures},
		{"Pages", testPages},
		{"RevokedDoNotCount", testRevokedDoNotCount},
		{"Purge", testPurge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var ctx = context.Background()

// list returns every record that matches f.
func list(t *testing.T, s auth.Store, f auth.Filter) []auth.Record {
	t.Helper()
	recs, next, err := s.List(ctx, f, auth.Page{})
	if err != nil {
		t.Fatal(err)
	}
	if next != "" {
		t.Fatalf("List without limit gave a next cursor %q", next)
	}
	return recs
}

func mustCreate(t *testing.T, s auth.Store, r auth.Record, maxActive int) {
	t.Helper()
	if err := s.Create(ctx, r, maxActive); err != nil {
		t.Fatalf("Create %s: %v", r.Prefix, err)
	}
}

func equalRecord(t *testing.T, got, want auth.Record) {
	t.Helper()
	g, w := got, want
	if !g.CreatedAt.Equal(w.CreatedAt) || !g.ExpiresAt.Equal(w.ExpiresAt) || !g.LastUsedAt.Equal(w.LastUsedAt) || !g.RevokedAt.Equal(w.RevokedAt) {
		t.Fatalf("times differ:\n got %+v\nwant %+v", got, want)
	}
	g.CreatedAt, g.ExpiresAt, g.LastUsedAt, g.RevokedAt = w.CreatedAt, w.ExpiresAt, w.LastUsedAt, w.RevokedAt
	if g != w {
		t.Fatalf("record differs:\n got %+v\nwant %+v", got, want)
	}
}

func testCreateGet(t *testing.T, s auth.Store) {
	r := NewRecord("acct1", 1)
	r.Alias, r.Category = "bot", "production"
	r.ExpiresAt = T0.Add(48 * time.Hour)
	r.Limits = auth.Limits{CreditsPerMinute: 600, MaxConnections: 3, MaxSubscriptions: 10, ConnMessagesPerSecond: 7}
	r.Quotas = auth.Quotas{Total: 1e6, Daily: 1000, Weekly: 5000, Monthly: 20000}
	r.Scopes = proto.ScopeMarket
	cidrs, err := auth.ParseCIDRs([]string{"10.1.2.3/8", "2001:db8::1/32", "192.0.2.7"})
	if err != nil || cidrs != "10.0.0.0/8,2001:db8::/32,192.0.2.7/32" {
		t.Fatalf("ParseCIDRs: %q %v", cidrs, err)
	}
	r.AllowedCIDRs = cidrs
	mustCreate(t, s, r, 5)
	got, err := s.Get(ctx, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	equalRecord(t, got, r)
	if _, err := s.Get(ctx, "Nope1234"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("Get unknown: %v, want ErrNotFound", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testCreateExists(t *testing.T, s auth.Store) {
	r := NewRecord("acct1", 1)
	mustCreate(t, s, r, 5)
	dup := r
	dup.Account, dup.Hash = "acct2", auth.Hash("other")
	if err := s.Create(ctx, dup, 5); !errors.Is(err, auth.ErrExists) {
		t.Fatalf("duplicate prefix: %v, want ErrExists", err)
	}
	got, _ := s.Get(ctx, r.Prefix)
	equalRecord(t, got, r)
}

func testCreateInvalid(t *testing.T, s auth.Store) {
	for name, mut := range map[string]func(*auth.Record){
		"prefix":  func(r *auth.Record) { r.Prefix = "bad_0OIl" },
		"account": func(r *auth.Record) { r.Account = "" },
		"status":  func(r *auth.Record) { r.Status = "paused" },
		"alias":   func(r *auth.Record) { r.Alias = strings.Repeat("a", auth.MaxLabelLen+1) },
		"credits": func(r *auth.Record) { r.Limits.CreditsPerMinute = 10001 },
		"quota":   func(r *auth.Record) { r.Quotas.Daily = -1 },
	} {
		r := NewRecord("acct1", 1)
		mut(&r)
		if err := s.Create(ctx, r, 5); !errors.Is(err, auth.ErrInvalidField) {
			t.Errorf("%s: %v, want ErrInvalidField", name, err)
		}
	}
	if recs := list(t, s, auth.Filter{}); len(recs) != 0 {
		t.Fatalf("invalid records stored: %v", recs)
	}
}

func testMaxActive(t *testing.T, s auth.Store) {
	for i := 0; i < 5; i++ {
		mustCreate(t, s, NewRecord("acct1", i), 5)
	}
	if err := s.Create(ctx, NewRecord("acct1", 5), 5); !errors.Is(err, auth.ErrTooManyKeys) {
		t.Fatalf("sixth key: %v, want ErrTooManyKeys", err)
	}
	// Inactive keys do not count and may always be created.
	in := NewRecord("acct1", 6)
	in.Status = auth.StatusInactive
	mustCreate(t, s, in, 5)
	// Another account is unaffected; maxActive 0 is unlimited.
	mustCreate(t, s, NewRecord("acct2", 7), 5)
	mustCreate(t, s, NewRecord("acct1", 8), 0)
	// Activating beyond the limit fails; after a revoke it works.
	_, err := s.Update(ctx, in.Prefix, 5, func(r *auth.Record) error { r.Status = auth.StatusActive; return nil })
	if !errors.Is(err, auth.ErrTooManyKeys) {
		t.Fatalf("activate sixth: %v, want ErrTooManyKeys", err)
	}
	for _, p := range []string{NewRecord("", 0).Prefix, NewRecord("", 1).Prefix} {
		if _, err := s.Update(ctx, p, 5, func(r *auth.Record) error { r.Status = auth.StatusRevoked; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, in.Prefix, 5, func(r *auth.Record) error { r.Status = auth.StatusActive; return nil }); err != nil {
		t.Fatalf("activate after revokes: %v", err)
	}
	if err := s.Create(ctx, NewRecord("acct1", 9), 5); !errors.Is(err, auth.ErrTooManyKeys) {
		t.Fatalf("create at limit: %v, want ErrTooManyKeys", err)
	}
	if got, _ := s.Get(ctx, NewRecord("", 9).Prefix); got.Prefix != "" {
		t.Fatal("refused record was stored")
	}
}

func testMaxActiveConcurrent(t *testing.T, s auth.Store) {
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Create(ctx, NewRecord("acct1", i), 5)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, auth.ErrTooManyKeys):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	recs := list(t, s, auth.Filter{Account: "acct1"})
	if ok != 5 || len(recs) != 5 {
		t.Fatalf("%d creates succeeded, %d stored; want 5 and 5", ok, len(recs))
	}
}

func testAlias(t *testing.T, s auth.Store) {
	a := NewRecord("acct1", 1)
	a.Alias = "bot"
	mustCreate(t, s, a, 5)
	b := NewRecord("acct1", 2)
	b.Alias = "bot"
	if err := s.Create(ctx, b, 5); !errors.Is(err, auth.ErrAliasTaken) {
		t.Fatalf("same alias: %v, want ErrAliasTaken", err)
	}
	b.Account = "acct2"
	mustCreate(t, s, b, 5) // other account: fine
	c := NewRecord("acct1", 3)
	mustCreate(t, s, c, 5)
	_, err := s.Update(ctx, c.Prefix, 5, func(r *auth.Record) error { r.Alias = "bot"; return nil })
	if !errors.Is(err, auth.ErrAliasTaken) {
		t.Fatalf("rename to taken alias: %v, want ErrAliasTaken", err)
	}
	if _, err := s.Update(ctx, a.Prefix, 5, func(r *auth.Record) error { r.Alias = "bot2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, c.Prefix, 5, func(r *auth.Record) error { r.Alias = "bot"; return nil }); err != nil {
		t.Fatalf("alias freed by rename: %v", err)
	}
}

func testList(t *testing.T, s auth.Store) {
	mk := func(acct string, n int, cat string, st auth.Status) auth.Record {
		r := NewRecord(acct, n)
		r.Category, r.Status = cat, st
		mustCreate(t, s, r, 0)
		return r
	}
	r1 := mk("acct1", 3, "production", auth.StatusActive)
	r2 := mk("acct1", 1, "staging", auth.StatusInactive)
	r3 := mk("acct2", 2, "production", auth.StatusActive)
	r4 := mk("acct2", 4, "production", auth.StatusRevoked)
	prefixes := func(f auth.Filter) []string {
		recs := list(t, s, f)
		out := []string{}
		for _, r := range recs {
			out = append(out, r.Prefix)
		}
		return out
	}
	for _, tc := range []struct {
		f    auth.Filter
		want []auth.Record
	}{
		{auth.Filter{}, []auth.Record{r2, r3, r1, r4}},
		{auth.Filter{Account: "acct1"}, []auth.Record{r2, r1}},
		{auth.Filter{Category: "production"}, []auth.Record{r3, r1, r4}},
		{auth.Filter{Status: auth.StatusActive}, []auth.Record{r3, r1}},
		{auth.Filter{Account: "acct2", Status: auth.StatusRevoked}, []auth.Record{r4}},
		{auth.Filter{Account: "acct3"}, nil},
		{auth.Filter{Query: "STAG"}, []auth.Record{r2}},                     // category, any case
		{auth.Filter{Query: "acct2"}, []auth.Record{r3, r4}},                // account
		{auth.Filter{Query: strings.ToLower(r1.Prefix)}, []auth.Record{r1}}, // a prefix, any case
		{auth.Filter{Query: "production", Status: auth.StatusActive}, []auth.Record{r3, r1}},
	} {
		want := []string{}
		for _, r := range tc.want {
			want = append(want, r.Prefix)
		}
		if got := prefixes(tc.f); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("List(%+v) = %v, want %v", tc.f, got, want)
		}
	}
}

func testUpdate(t *testing.T, s auth.Store) {
	r := NewRecord("acct1", 1)
	mustCreate(t, s, r, 5)
	got, err := s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error {
		x.Status, x.Category, x.ExpiresAt = auth.StatusInactive, "staging", T0.Add(time.Hour)
		x.Limits.CreditsPerMinute = 42
		x.Quotas.Daily = 9
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := r
	want.Status, want.Category, want.ExpiresAt = auth.StatusInactive, "staging", T0.Add(time.Hour)
	want.Limits.CreditsPerMinute, want.Quotas.Daily = 42, 9
	equalRecord(t, got, want)
	stored, _ := s.Get(ctx, r.Prefix)
	equalRecord(t, stored, want)

	boom := errors.New("boom")
	_, err = s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Category = "x"; return boom })
	if err != boom {
		t.Fatalf("fn error: %v, want it returned as is", err)
	}
	if _, err := s.Update(ctx, "Nope1234", 5, func(*auth.Record) error { return nil }); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	_, err = s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Account = "thief"; return nil })
	if err == nil {
		t.Fatal("account change accepted")
	}
	_, err = s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Hash = auth.Hash("x"); return nil })
	if err == nil {
		t.Fatal("hash change accepted")
	}
	_, err = s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Limits.CreditsPerMinute = -1; return nil })
	if !errors.Is(err, auth.ErrInvalidField) {
		t.Fatalf("bad limits: %v", err)
	}
	// Revoked is final.
	if _, err := s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Status = auth.StatusRevoked; return nil }); err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Status = auth.StatusActive; return nil })
	if !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("reactivate revoked: %v, want ErrRevoked", err)
	}
	want.Status = auth.StatusRevoked
	stored, _ = s.Get(ctx, r.Prefix)
	if stored.RevokedAt.IsZero() {
		t.Fatal("revoked without RevokedAt")
	}
	want.RevokedAt = stored.RevokedAt
	equalRecord(t, stored, want)
	// Later changes keep RevokedAt.
	again, err := s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Category = "gone"; x.RevokedAt = T0; return nil })
	if err != nil || !again.RevokedAt.Equal(want.RevokedAt) {
		t.Fatalf("update of a revoked key: %v, RevokedAt %v, want %v", err, again.RevokedAt, want.RevokedAt)
	}
}

func testUpdateLimits(t *testing.T, s auth.Store) {
	r := NewRecord("acct1", 1)
	mustCreate(t, s, r, 5)
	// Usage cannot be changed through Update.
	if err := s.AddUsage(ctx, map[string]auth.UsageDelta{r.Prefix: {Count: 3, LastUsed: T0}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error {
		x.RequestCount, x.LastUsedAt = 0, time.Time{}
		x.Limits.MaxConnections = 2
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.RequestCount != 3 || !got.LastUsedAt.Equal(T0) || got.Limits.MaxConnections != 2 {
		t.Fatalf("after update: %+v", got)
	}
}

func testUpdateConcurrent(t *testing.T, s auth.Store) {
	r := NewRecord("acct1", 1)
	mustCreate(t, s, r, 5)
	var wg sync.WaitGroup
	const n = 16
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, r.Prefix, 5, func(x *auth.Record) error { x.Limits.MaxConnections++; return nil })
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, r.Prefix)
	if got.Limits.MaxConnections != n {
		t.Fatalf("MaxConnections = %d after %d concurrent increments", got.Limits.MaxConnections, n)
	}
}

func testDelete(t *testing.T, s auth.Store) {
	a, b := NewRecord("acct1", 1), NewRecord("acct1", 2)
	a.Alias = "bot"
	mustCreate(t, s, a, 5)
	mustCreate(t, s, b, 5)
	if err := s.AppendEvent(ctx, a.Prefix, auth.Event{Time: T0, IP: "1.2.3.4", Refusal: "TOO_MANY_CONNECTIONS"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsage(ctx, map[string]auth.UsageDelta{b.Prefix: {LastUsed: T0}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, b.Prefix); !errors.Is(err, auth.ErrKeyInUse) {
		t.Fatalf("delete used key: %v, want ErrKeyInUse", err)
	}
	if err := s.Delete(ctx, a.Prefix); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, a.Prefix); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("Get deleted: %v", err)
	}
	if _, err := s.Events(ctx, a.Prefix, 0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("Events deleted: %v", err)
	}
	if err := s.Delete(ctx, a.Prefix); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	recs := list(t, s, auth.Filter{Account: "acct1"})
	if len(recs) != 1 || recs[0].Prefix != b.Prefix {
		t.Fatalf("after delete: %v", recs)
	}
	// The prefix and the alias are free again, without old events.
	mustCreate(t, s, a, 5)
	if evs, err := s.Events(ctx, a.Prefix, 0); err != nil || len(evs) != 0 {
		t.Fatalf("events of recreated key: %v %v", evs, err)
	}
}

func testAddUsage(t *testing.T, s auth.Store) {
	a, b := NewRecord("acct1", 1), NewRecord("acct1", 2)
	mustCreate(t, s, a, 5)
	mustCreate(t, s, b, 5)
	t1, t2 := T0.Add(time.Minute), T0.Add(2*time.Minute)
	must := func(batch map[string]auth.UsageDelta) {
		t.Helper()
		if err := s.AddUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	must(map[string]auth.UsageDelta{a.Prefix: {Count: 5, LastUsed: t2}, b.Prefix: {Count: 1, LastUsed: t1}, "Gone1234": {Count: 9, LastUsed: t1}})
	must(map[string]auth.UsageDelta{a.Prefix: {Count: 2, LastUsed: t1}}) // older time: count only
	must(nil)
	ga, _ := s.Get(ctx, a.Prefix)
	gb, _ := s.Get(ctx, b.Prefix)
	if ga.RequestCount != 7 || !ga.LastUsedAt.Equal(t2) || gb.RequestCount != 1 || !gb.LastUsedAt.Equal(t1) {
		t.Fatalf("usage: a=%d %v b=%d %v", ga.RequestCount, ga.LastUsedAt, gb.RequestCount, gb.LastUsedAt)
	}
	if _, err := s.Get(ctx, "Gone1234"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("AddUsage created a record for an unknown prefix")
	}
	recs := list(t, s, auth.Filter{Account: "acct1"})
	if len(recs) != 2 || recs[0].RequestCount != 7 || recs[1].RequestCount != 1 {
		t.Fatalf("List usage: %+v", recs)
	}
}

// testAddUsageMetered: delivered messages, bytes and credits add up per
// UTC day and in total; a later day resets today's counters, a late batch
// of an earlier day counts in the totals only; an update keeps them.
func testAddUsageMetered(t *testing.T, s auth.Store) {
	a := NewRecord("acct1", 1)
	mustCreate(t, s, a, 5)
	day := auth.UTCDay(T0)
	must := func(d auth.UsageDelta) {
		t.Helper()
		if err := s.AddUsage(ctx, map[string]auth.UsageDelta{a.Prefix: d}); err != nil {
			t.Fatal(err)
		}
	}
	m := func(msgs, bytes, credits int64) auth.UsageCounters {
		return auth.UsageCounters{MessagesDelivered: msgs, BytesDelivered: bytes, Credits: credits}
	}
	must(auth.UsageDelta{Day: day, Metered: m(10, 1000, 3)})
	must(auth.UsageDelta{Count: 1, Day: day, Metered: m(5, 500, 1)})
	g, _ := s.Get(ctx, a.Prefix)
	if g.Today(T0) != m(15, 1500, 4) || g.UsageTotal != m(15, 1500, 4) || g.RequestCount != 1 {
		t.Fatalf("day 1: today %+v total %+v", g.Today(T0), g.UsageTotal)
	}
	if _, err := s.Update(ctx, a.Prefix, 0, func(r *auth.Record) error { r.Alias = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	next := auth.NextUTCMidnight(T0)
	if g, _ := s.Get(ctx, a.Prefix); g.Today(next) != (auth.UsageCounters{}) || g.Today(T0) != m(15, 1500, 4) {
		t.Fatalf("after update / read next day: today %+v, %+v", g.Today(T0), g.Today(next))
	}
	must(auth.UsageDelta{Day: day + 1, Metered: m(2, 200, 0)})
	must(auth.UsageDelta{Day: day, Metered: m(1, 100, 0)}) // late batch of the day before
	g, _ = s.Get(ctx, a.Prefix)
	if g.Today(next) != m(2, 200, 0) || g.UsageTotal != m(18, 1800, 4) || g.Alias != "renamed" {
		t.Fatalf("day 2: today %+v total %+v", g.Today(next), g.UsageTotal)
	}
	recs := list(t, s, auth.Filter{Account: "acct1"})
	if len(recs) != 1 || recs[0].UsageTotal != m(18, 1800, 4) {
		t.Fatalf("List metered usage: %+v", recs)
	}
}

func testEvents(t *testing.T, s auth.Store) {
	a := NewRecord("acct1", 1)
	mustCreate(t, s, a, 5)
	if err := s.AppendEvent(ctx, "Gone1234", auth.Event{Time: T0}); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("append to unknown key: %v", err)
	}
	if _, err := s.Events(ctx, "Gone1234", 10); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("events of unknown key: %v", err)
	}
	const total = auth.MaxEvents + 5
	var wg sync.WaitGroup
	// Appends from 4 writers, each in order; the final order is by Time
	// within each writer.
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 4 {
				ev := auth.Event{Time: T0.Add(time.Duration(i) * time.Millisecond), IP: "10.0.0.1", Node: "n1",
					DurationMS: int64(i), MsgsIn: 1, MsgsOut: 2, CloseCode: 1000, CloseReason: "bye"}
				if err := s.AppendEvent(ctx, a.Prefix, ev); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs, err := s.Events(ctx, a.Prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != auth.MaxEvents {
		t.Fatalf("%d events kept, want %d", len(evs), auth.MaxEvents)
	}
	seen := map[int64]bool{}
	for _, ev := range evs {
		seen[ev.DurationMS] = true
	}
	if len(seen) != auth.MaxEvents {
		t.Fatalf("duplicates among kept events")
	}
	last3, _ := s.Events(ctx, a.Prefix, 3)
	if len(last3) != 3 || last3[2] != evs[len(evs)-1] || last3[0] != evs[len(evs)-3] {
		t.Fatalf("limit 3: %+v", last3)
	}
	// Sequential appends come back newest last, with every field.
	b := NewRecord("acct1", 2)
	mustCreate(t, s, b, 5)
	want := []auth.Event{
		{Time: T0, IP: "1.1.1.1", Node: "a", DurationMS: 10, MsgsIn: 3, MsgsOut: 4, CloseCode: 1008, CloseReason: "api key revoked"},
		{Time: T0.Add(time.Second), IP: "2001:db8::1", Refusal: "TOO_MANY_CONNECTIONS"},
	}
	for _, ev := range want {
		if err := s.AppendEvent(ctx, b.Prefix, ev); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Events(ctx, b.Prefix, 10)
	if len(got) != 2 || !got[0].Time.Equal(want[0].Time) || !got[1].Time.Equal(want[1].Time) {
		t.Fatalf("events: %+v", got)
	}
	got[0].Time, got[1].Time = want[0].Time, want[1].Time
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
}

func testSignatures(t *testing.T, s auth.Store) {
	now := time.Now()
	until := now.Add(30 * time.Second)
	use := func(sig string, now time.Time) bool {
		t.Helper()
		fresh, err := s.UseSignature(ctx, sig, now, until)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	if !use("sigA", now) {
		t.Fatal("first use not fresh")
	}
	if use("sigA", now.Add(time.Second)) {
		t.Fatal("replay accepted")
	}
	if !use("sigB", now) {
		t.Fatal("other signature not fresh")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseSignature(ctx, "sigC", now, until)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fresh != 1 {
		t.Fatalf("concurrent uses: %d fresh, want 1", fresh)
	}
}

// OpenBolt opens a bbolt store in t.TempDir(), closed by t.Cleanup.
func OpenBolt(t *testing.T) auth.Store {
	t.Helper()
	s, err := auth.OpenBolt(t.TempDir(), auth.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// OpenMiniredis opens a Redis store on a fresh miniredis (namespace
// "test:"), closed by t.Cleanup.
func OpenMiniredis(t *testing.T) auth.Store {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return auth.NewRedisStore(rdb, auth.RedisOptions{Namespace: "test:"})
}

// AddKey stores a new active key of account created at createdAt, with mod
// applied to its record first (when not nil), and returns the key.
func AddKey(t testing.TB, s auth.Store, account string, createdAt time.Time, mod func(*auth.Record)) string {
	t.Helper()
	key, prefix, err := auth.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec := auth.Record{Prefix: prefix, Hash: auth.Hash(key), Account: account, Status: auth.StatusActive, CreatedAt: createdAt}
	if mod != nil {
		mod(&rec)
	}
	if err := s.Create(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
	return key
}
