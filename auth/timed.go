package auth

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TimedStore wraps a Store and records the latency and errors of every
// call, by operation, in floodgate_key_store_seconds and
// floodgate_key_store_errors_total (ErrNotFound is not an error here).
type TimedStore struct {
	Store
	// Immutable after NewTimedStore.
	seconds *prometheus.HistogramVec
	errs    *prometheus.CounterVec
}

// NewTimedStore wraps s and registers its metrics on reg (nil: none).
func NewTimedStore(s Store, reg prometheus.Registerer) *TimedStore {
	t := &TimedStore{
		Store: s,
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "floodgate", Name: "key_store_seconds",
			Help:    "Key store call latency by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "key_store_errors_total",
			Help: "Key store calls that failed, by operation.",
		}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(t.seconds, t.errs)
	}
	return t
}

func (t *TimedStore) done(op string, start time.Time, err error) {
	t.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.errs.WithLabelValues(op).Inc()
	}
}

func (t *TimedStore) Create(ctx context.Context, rec Record, maxActive int) error {
	start := time.Now()
	err := t.Store.Create(ctx, rec, maxActive)
	t.done("create", start, err)
	return err
}

func (t *TimedStore) Get(ctx context.Context, prefix string) (rec Record, err error) {
	start := time.Now()
	rec, err = t.Store.Get(ctx, prefix)
	t.done("get", start, err)
	return rec, err
}

func (t *TimedStore) List(ctx context.Context, f Filter, p Page) ([]Record, string, error) {
	start := time.Now()
	recs, next, err := t.Store.List(ctx, f, p)
	t.done("list", start, err)
	return recs, next, err
}

func (t *TimedStore) Update(ctx context.Context, prefix string, maxActive int, fn func(*Record) error) (Record, error) {
	start := time.Now()
	rec, err := t.Store.Update(ctx, prefix, maxActive, fn)
	t.done("update", start, err)
	return rec, err
}

func (t *TimedStore) Delete(ctx context.Context, prefix string) error {
	start := time.Now()
	err := t.Store.Delete(ctx, prefix)
	t.done("delete", start, err)
	return err
}

func (t *TimedStore) AddUsage(ctx context.Context, batch map[string]UsageDelta) error {
	start := time.Now()
	err := t.Store.AddUsage(ctx, batch)
	t.done("add_usage", start, err)
	return err
}

func (t *TimedStore) AppendEvent(ctx context.Context, prefix string, ev Event) error {
	start := time.Now()
	err := t.Store.AppendEvent(ctx, prefix, ev)
	t.done("append_event", start, err)
	return err
}

func (t *TimedStore) AppendEvents(ctx context.Context, batch []PrefixEvent) error {
	start := time.Now()
	err := t.Store.AppendEvents(ctx, batch)
	t.done("append_events", start, err)
	return err
}

func (t *TimedStore) Purge(ctx context.Context, revokedBefore, now time.Time, max int) (int, error) {
	start := time.Now()
	n, err := t.Store.Purge(ctx, revokedBefore, now, max)
	t.done("purge", start, err)
	return n, err
}

func (t *TimedStore) Events(ctx context.Context, prefix string, limit int) ([]Event, error) {
	start := time.Now()
	evs, err := t.Store.Events(ctx, prefix, limit)
	t.done("events", start, err)
	return evs, err
}

func (t *TimedStore) UseSignature(ctx context.Context, sig string, now, until time.Time) (bool, error) {
	start := time.Now()
	fresh, err := t.Store.UseSignature(ctx, sig, now, until)
	t.done("use_signature", start, err)
	return fresh, err
}

func (t *TimedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := t.Store.Ping(ctx)
	t.done("ping", start, err)
	return err
}
