package storetest

import (
	"fmt"
	"testing"
	"time"

	"floodgate/auth"
)

// AuditOpener returns a new, empty store that keeps an audit log.
type AuditOpener func(t *testing.T) auth.AuditLog

// RunAudit is the conformance suite of auth.AuditLog: IDs, newest-first
// pages, the prefix filter, and the bound.
func RunAudit(t *testing.T, open AuditOpener) {
	t.Run("Empty", func(t *testing.T) {
		got, next, err := open(t).Audit(ctx, "", 10, 0)
		if err != nil || len(got) != 0 || next != 0 {
			t.Fatalf("empty log: %v %d %v", got, next, err)
		}
	})
	t.Run("Pages", func(t *testing.T) {
		a := open(t)
		for i := range 7 {
			e := auth.AuditEntry{Time: T0.Add(time.Duration(i) * time.Second), Action: auth.AuditUpdate,
				Prefix: []string{"AAAAAAAA", "BBBBBBBB"}[i%2], TokenID: "sha256:00000000", IP: "127.0.0.1",
				Changes: map[string]auth.Change{"limits.credits_per_minute": {From: nil, To: float64(i)}}}
			if err := a.AppendAudit(ctx, e, 0); err != nil {
				t.Fatal(err)
			}
		}
		page1, next, err := a.Audit(ctx, "", 3, 0)
		if err != nil || len(page1) != 3 || next == 0 {
			t.Fatalf("page 1: %v next %d %v", page1, next, err)
		}
		if page1[0].ID != 7 || page1[1].ID != 6 || page1[2].ID != 5 {
			t.Fatalf("page 1 IDs %d %d %d, want 7 6 5", page1[0].ID, page1[1].ID, page1[2].ID)
		}
		if c := page1[0].Changes["limits.credits_per_minute"]; c.To != float64(6) || c.From != nil {
			t.Fatalf("changes round trip: %+v", page1[0].Changes)
		}
		if !page1[0].Time.Equal(T0.Add(6*time.Second)) || page1[0].Prefix != "AAAAAAAA" || page1[0].IP != "127.0.0.1" {
			t.Fatalf("entry round trip: %+v", page1[0])
		}
		var ids []uint64
		for before := next; before != 0; {
			page, n, err := a.Audit(ctx, "", 3, before)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				ids = append(ids, e.ID)
			}
			before = n
		}
		if fmt.Sprint(ids) != "[4 3 2 1]" {
			t.Fatalf("later pages %v, want [4 3 2 1]", ids)
		}
		only, next, err := a.Audit(ctx, "BBBBBBBB", 2, 0)
		if err != nil || len(only) != 2 || only[0].ID != 6 || only[1].ID != 4 || next != 4 {
			t.Fatalf("prefix page: %+v next %d %v", only, next, err)
		}
		rest, next, err := a.Audit(ctx, "BBBBBBBB", 2, next)
		if err != nil || len(rest) != 1 || rest[0].ID != 2 || next != 0 {
			t.Fatalf("prefix last page: %+v next %d %v", rest, next, err)
		}
	})
	t.Run("Bounded", func(t *testing.T) {
		a := open(t)
		const keep = 20
		for i := range keep + 5 {
			if err := a.AppendAudit(ctx, auth.AuditEntry{Time: T0, Action: auth.AuditCreate, Prefix: "CCCCCCCC"}, keep); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
		}
		n := 0
		var last uint64
		for before := uint64(0); ; {
			page, next, err := a.Audit(ctx, "", 7, before)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if len(page) > 0 {
				last = page[len(page)-1].ID
			}
			if next == 0 {
				break
			}
			before = next
		}
		if n != keep || last != 6 {
			t.Fatalf("%d entries kept, oldest %d; want %d, oldest 6", n, last, keep)
		}
	})
}
