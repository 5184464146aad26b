package node_test

import (
	"testing"
	"time"

	"floodgate/keyapi"
)

// The figures of docs/security.md (issue 11): long runs, so benchmarks
// (`go test -run '^$' -bench Figure -benchtime 1x ./node/`); each runs its
// scenario once whatever b.N is and reports what it measured.

// BenchmarkFigure_RefusalFlood: 15,000 refused upgrades of one key in a
// burst (32 sockets at a time) while another key opens and closes 100
// sessions. Reported: the store writes of events, the events of the
// flooded key, the dropped events, the other key's events.
func BenchmarkFigure_RefusalFlood(b *testing.B) {
	n := startNode(b, nil)
	b.ResetTimer()
	r := refusalEventFlood(b, n, 15000, 32, 100)
	b.StopTimer()
	b.ReportMetric(r.writes, "store-writes")
	b.ReportMetric(float64(r.refusalEvents), "flooded-key-events")
	b.ReportMetric(r.dropped, "dropped")
	b.ReportMetric(float64(r.otherEvents), "other-key-events")
	b.ReportMetric(r.refusalsPerSecond, "refusals/s")
	if r.dropped > 0 || r.otherEvents != 100 || r.counted != 15000 {
		b.Fatalf("%+v", r)
	}
}

// BenchmarkFigure_FreshWallets: one IP creating keys with a fresh wallet
// per request, as fast as it can, for 60 s. Reported: keys created (the
// budget is 30 per minute with a burst of 30: at most 60 in 60 s) and
// requests refused.
func BenchmarkFigure_FreshWallets(b *testing.B) {
	n := startNode(b, nil)
	b.ResetTimer()
	created, refused := 0, 0
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		r := call(b, n, "POST", pathCreate, newTestWallet(b).signed(b, keyapi.TypeCreateAPIKey, nil, 5000))
		switch r.status {
		case 200:
			created++
		case 429:
			refused++
		default:
			b.Fatalf("%d %s", r.status, r.code())
		}
	}
	b.StopTimer()
	b.Logf("60 s from one IP: %d keys created, %d requests refused", created, refused)
	b.ReportMetric(float64(created), "keys-created")
	b.ReportMetric(float64(refused), "refused")
	if created > 61 {
		b.Fatalf("%d keys in 60 s", created)
	}
}
