package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"floodgate/auth"
)

// Batched events, pages, the per-account indexes and the purge of revoked
// keys.

func testAppendEvents(t *testing.T, s auth.Store) {
	a, b := NewRecord("acct1", 1), NewRecord("acct1", 2)
	mustCreate(t, s, a, 5)
	mustCreate(t, s, b, 5)
	if err := s.AppendEvents(ctx, nil); err != nil {
		t.Fatal(err)
	}
	e1 := auth.Event{Time: T0, IP: "10.0.0.1", Refusal: "TOO_MANY_CONNECTIONS", Count: 7400}
	e2 := auth.Event{Time: T0.Add(time.Second), IP: "10.0.0.2", Node: "n1", DurationMS: 5, CloseCode: 1000, CloseReason: "bye"}
	e3 := auth.Event{Time: T0.Add(2 * time.Second), IP: "10.0.0.1", Refusal: "TOO_MANY_CONNECTIONS", Count: 2}
	batch := []auth.PrefixEvent{{Prefix: a.Prefix, Event: e1}, {Prefix: "Gone1234", Event: e1}, {Prefix: b.Prefix, Event: e2}, {Prefix: a.Prefix, Event: e3}}
	if err := s.AppendEvents(ctx, batch); err != nil {
		t.Fatalf("batch with an unknown prefix: %v", err)
	}
	check := func(prefix string, want ...auth.Event) {
		t.Helper()
		got, err := s.Events(ctx, prefix, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d: %+v", prefix, len(got), len(want), got)
		}
		for i := range want {
			g := got[i]
			if !g.Time.Equal(want[i].Time) {
				t.Fatalf("%s event %d: time %v, want %v", prefix, i, g.Time, want[i].Time)
			}
			g.Time = want[i].Time
			if g != want[i] {
				t.Fatalf("%s event %d:\n got %+v\nwant %+v", prefix, i, g, want[i])
			}
		}
	}
	check(a.Prefix, e1, e3)
	check(b.Prefix, e2)
	if _, err := s.Get(ctx, "Gone1234"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal("AppendEvents created a record for an unknown prefix")
	}
	// A batch longer than MaxEvents keeps the newest MaxEvents.
	big := make([]auth.PrefixEvent, auth.MaxEvents+10)
	for i := range big {
		big[i] = auth.PrefixEvent{Prefix: b.Prefix, Event: auth.Event{Time: T0, DurationMS: int64(i)}}
	}
	if err := s.AppendEvents(ctx, big); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Events(ctx, b.Prefix, 0)
	if len(got) != auth.MaxEvents || got[0].DurationMS != 10 || got[len(got)-1].DurationMS != int64(len(big)-1) {
		t.Fatalf("after a big batch: %d events, first %d, last %d", len(got), got[0].DurationMS, got[len(got)-1].DurationMS)
	}
}

// pages lists f page by page and returns the prefixes of every page.
func pages(t *testing.T, s auth.Store, f auth.Filter, limit int) [][]string {
	t.Helper()
	var out [][]string
	cursor := ""
	for i := 0; ; i++ {
		recs, next, err := s.List(ctx, f, auth.Page{Limit: limit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > limit {
			t.Fatalf("page of %d records, limit %d", len(recs), limit)
		}
		var page []string
		for _, r := range recs {
			page = append(page, r.Prefix)
		}
		out = append(out, page)
		if next == "" {
			return out
		}
		if i > 100 {
			t.Fatal("pages never end")
		}
		cursor = next
	}
}

func flat(pp [][]string) []string {
	var out []string
	for _, p := range pp {
		out = append(out, p...)
	}
	return out
}

func testPages(t *testing.T, s auth.Store) {
	var acct1 []string
	for n := 1; n <= 10; n++ {
		r := NewRecord("acct1", n)
		if n%3 == 0 {
			r.Status = auth.StatusInactive
		}
		if n%4 == 0 {
			r.Status = auth.StatusRevoked
		}
		mustCreate(t, s, r, 0)
		acct1 = append(acct1, r.Prefix)
	}
	var all []string
	for n := 11; n <= 13; n++ {
		r := NewRecord("acct2", n)
		mustCreate(t, s, r, 0)
		all = append(all, r.Prefix)
	}
	all = append(acct1, all...)
	// Same creation time: ordered by prefix.
	same1, same2 := NewRecord("acct2", 15), NewRecord("acct2", 14)
	same1.CreatedAt, same2.CreatedAt = T0.Add(time.Hour), T0.Add(time.Hour)
	mustCreate(t, s, same1, 0)
	mustCreate(t, s, same2, 0)
	all = append(all, same2.Prefix, same1.Prefix)

	pp := pages(t, s, auth.Filter{Account: "acct1"}, 3)
	if len(pp) != 4 || fmt.Sprint(flat(pp)) != fmt.Sprint(acct1) {
		t.Fatalf("acct1 in pages of 3: %v, want %v", pp, acct1)
	}
	if got := flat(pages(t, s, auth.Filter{}, 4)); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("everything in pages of 4: %v\nwant %v", got, all)
	}
	if got := flat(pages(t, s, auth.Filter{}, 100)); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("everything in one page: %v", got)
	}
	// A last page that is exactly full says so with no cursor.
	if pp := pages(t, s, auth.Filter{Account: "acct1"}, 5); len(pp) != 2 {
		t.Fatalf("10 records in pages of 5: %d pages", len(pp))
	}
	inactive := flat(pages(t, s, auth.Filter{Account: "acct1", Status: auth.StatusInactive}, 1))
	if fmt.Sprint(inactive) != fmt.Sprint([]string{acct1[2], acct1[5], acct1[8]}) {
		t.Fatalf("inactive keys of acct1: %v", inactive)
	}
	active := flat(pages(t, s, auth.Filter{Account: "acct1", Status: auth.StatusActive}, 2))
	if fmt.Sprint(active) != fmt.Sprint([]string{acct1[0], acct1[1], acct1[4], acct1[6], acct1[9]}) {
		t.Fatalf("active keys of acct1: %v", active)
	}
	// A cursor stays valid when its record goes away.
	first, next, err := s.List(ctx, auth.Filter{Account: "acct1"}, auth.Page{Limit: 2})
	if err != nil || len(first) != 2 || next == "" {
		t.Fatalf("first page: %v %q %v", first, next, err)
	}
	if err := s.Delete(ctx, first[1].Prefix); err != nil {
		t.Fatal(err)
	}
	second, _, err := s.List(ctx, auth.Filter{Account: "acct1"}, auth.Page{Limit: 2, Cursor: next})
	if err != nil || len(second) != 2 || second[0].Prefix != acct1[2] {
		t.Fatalf("page after a deleted cursor record: %v %v", second, err)
	}
	for _, bad := range []string{"nope", "0000000000000000:bad_0OIl", "XYZ:Pre11111", "0000000000000000Pre11111"} {
		if _, _, err := s.List(ctx, auth.Filter{}, auth.Page{Limit: 2, Cursor: bad}); !errors.Is(err, auth.ErrInvalidField) {
			t.Errorf("cursor %q: %v, want ErrInvalidField", bad, err)
		}
	}
}

func revoke(t *testing.T, s auth.Store, prefix string, at time.Time) {
	t.Helper()
	_, err := s.Update(ctx, prefix, 0, func(r *auth.Record) error { r.Status, r.RevokedAt = auth.StatusRevoked, at; return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func testRevokedDoNotCount(t *testing.T, s auth.Store) {
	n := 0
	for round := 0; round < 4; round++ {
		var made []string
		for i := 0; i < 5; i++ {
			n++
			r := NewRecord("acct1", n)
			mustCreate(t, s, r, 5)
			made = append(made, r.Prefix)
		}
		if err := s.Create(ctx, NewRecord("acct1", 1000+round), 5); !errors.Is(err, auth.ErrTooManyKeys) {
			t.Fatalf("round %d, sixth key: %v", round, err)
		}
		for _, p := range made {
			revoke(t, s, p, T0)
		}
	}
	// 20 revoked keys, none active: five fit again; deactivating one makes
	// room, reactivating it is then refused.
	var live []string
	for i := 0; i < 5; i++ {
		n++
		r := NewRecord("acct1", n)
		mustCreate(t, s, r, 5)
		live = append(live, r.Prefix)
	}
	if _, err := s.Update(ctx, live[0], 5, func(r *auth.Record) error { r.Status = auth.StatusInactive; return nil }); err != nil {
		t.Fatal(err)
	}
	n++
	mustCreate(t, s, NewRecord("acct1", n), 5)
	if _, err := s.Update(ctx, live[0], 5, func(r *auth.Record) error { r.Status = auth.StatusActive; return nil }); !errors.Is(err, auth.ErrTooManyKeys) {
		t.Fatalf("reactivate over the limit: %v", err)
	}
	if got := list(t, s, auth.Filter{Account: "acct1", Status: auth.StatusActive}); len(got) != 5 {
		t.Fatalf("%d active keys listed, want 5", len(got))
	}
	if got := list(t, s, auth.Filter{Account: "acct1", Status: auth.StatusRevoked}); len(got) != 20 {
		t.Fatalf("%d revoked keys listed, want 20", len(got))
	}
	// A revoked key keeps its alias until it is purged.
	a := NewRecord("acct2", 2001)
	a.Alias = "bot"
	mustCreate(t, s, a, 5)
	revoke(t, s, a.Prefix, T0)
	b := NewRecord("acct2", 2002)
	b.Alias = "bot"
	if err := s.Create(ctx, b, 5); !errors.Is(err, auth.ErrAliasTaken) {
		t.Fatalf("alias of a revoked key: %v, want ErrAliasTaken", err)
	}
}

func testPurge(t *testing.T, s auth.Store) {
	a, b, c, d := NewRecord("acct1", 1), NewRecord("acct1", 2), NewRecord("acct1", 3), NewRecord("acct2", 4)
	a.Alias = "bot"
	d.Status = auth.StatusInactive
	for _, r := range []auth.Record{a, b, c, d} {
		mustCreate(t, s, r, 5)
	}
	if err := s.AppendEvent(ctx, a.Prefix, auth.Event{Time: T0, IP: "1.2.3.4"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUsage(ctx, map[string]auth.UsageDelta{a.Prefix: {Count: 9, LastUsed: T0}}); err != nil {
		t.Fatal(err)
	}
	revoke(t, s, a.Prefix, T0.Add(time.Hour))
	revoke(t, s, b.Prefix, T0.Add(2*time.Hour))
	purge := func(before time.Time, max, want int) {
		t.Helper()
		n, err := s.Purge(ctx, before, time.Now(), max)
		if err != nil || n != want {
			t.Fatalf("Purge(%v, %d) = %d, %v; want %d", before, max, n, err, want)
		}
	}
	purge(T0.Add(time.Hour), 10, 0) // strictly before
	purge(T0.Add(90*time.Minute), 10, 1)
	if _, err := s.Get(ctx, a.Prefix); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("purged key: %v", err)
	}
	if _, err := s.Events(ctx, a.Prefix, 0); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("events of a purged key: %v", err)
	}
	if got := list(t, s, auth.Filter{}); len(got) != 3 {
		t.Fatalf("after purging one of 4: %d listed", len(got))
	}
	// Its prefix and alias are free again, without usage or events.
	mustCreate(t, s, a, 5)
	if got, _ := s.Get(ctx, a.Prefix); got.RequestCount != 0 || !got.LastUsedAt.IsZero() {
		t.Fatalf("recreated key kept usage: %+v", got)
	}
	if evs, err := s.Events(ctx, a.Prefix, 0); err != nil || len(evs) != 0 {
		t.Fatalf("recreated key kept events: %v %v", evs, err)
	}
	purge(T0.Add(3*time.Hour), 1, 1)
	purge(T0.Add(3*time.Hour), 1, 0)
	for _, r := range []auth.Record{a, c, d} {
		if _, err := s.Get(ctx, r.Prefix); err != nil {
			t.Fatalf("purge took a live key %s: %v", r.Prefix, err)
		}
	}
	if got := list(t, s, auth.Filter{Account: "acct1"}); len(got) != 2 {
		t.Fatalf("acct1 after purges: %d keys", len(got))
	}
}
