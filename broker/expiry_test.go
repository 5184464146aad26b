package broker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"floodgate/broker"
	"floodgate/internal/proto"
)

// expAdmitter admits a key connection whose key expires at exp.
type expAdmitter struct{ exp time.Time }

func (a expAdmitter) Admit(context.Context, *http.Request, time.Time) (broker.Identity, broker.Budget, *proto.Refusal) {
	return broker.Identity{Kind: broker.KeyHolder, ID: "key:k", KeyPrefix: "k", ExpiresAt: a.exp}, cappedBudget{0}, nil
}

// TestKeyExpiringNotices: a key expiring in 3 days gets KEY_EXPIRING as
// the first frame after the upgrade; the sweeper, on a fake clock, sends
// it again one hour before the expiry, once.
func TestKeyExpiringNotices(t *testing.T) {
	exp := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	// A long sweep interval: the test drives the sweeps itself.
	e := newEnv(t, broker.Options{Admitter: expAdmitter{exp}, SweepInterval: time.Hour, IdleTimeout: 100 * time.Hour,
		PingInterval: 100 * time.Hour, PongTimeout: 100 * time.Hour, Lifetime: 200 * time.Hour})
	c := e.dial(nil)
	got := c.read()
	var in int64
	var at string
	if _, err := fmt.Sscanf(got, `{"channel":"notice","data":{"code":"KEY_EXPIRING","expires_at":%q,"in_ms":%d}}`, &at, &in); err != nil {
		t.Fatalf("first frame %s: %v", got, err)
	}
	if at != exp.UTC().Format(time.RFC3339) || in <= int64(71*time.Hour/time.Millisecond) || in > int64(72*time.Hour/time.Millisecond) {
		t.Fatalf("notice %s", got)
	}
	c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	broker.Sweep(e.srv, exp.Add(-61*time.Minute)) // not yet
	broker.Sweep(e.srv, exp.Add(-59*time.Minute))
	broker.Sweep(e.srv, exp.Add(-58*time.Minute)) // once only
	c.expect(fmt.Sprintf(`{"channel":"notice","data":{"code":"KEY_EXPIRING","expires_at":%q,"in_ms":%d}}`, at, (59 * time.Minute).Milliseconds()))
	c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
}

// TestKeyExpiringNotInWindow: a key expiring in 30 days, or never, gets
// no notice; its first frame is the pong.
func TestKeyExpiringNotInWindow(t *testing.T) {
	for _, exp := range []time.Time{time.Now().Add(30 * 24 * time.Hour), {}} {
		e := newEnv(t, broker.Options{Admitter: expAdmitter{exp}})
		c := e.dial(nil)
		c.roundTrip(`{"method":"ping"}`, `{"channel":"pong"}`)
	}
}
