//go:build integration

package broker_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"floodgate/broker"
	"floodgate/fanout"
)

// TestIntegrationRealNATS runs the core path against the NATS server of
// NATS_URL, on a subject prefix of its own.
func TestIntegrationRealNATS(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		t.Skip("NATS_URL not set")
	}
	rnd := make([]byte, 4)
	rand.Read(rnd)
	prefix := "it" + hex.EncodeToString(rnd)
	src, err := fanout.NewSources(fanout.SourcesConfig{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, url, fanout.Options{}, broker.Options{Sources: src})
	a, b := e.dial(nil), e.dial(nil)
	for _, c := range []*client{a, b} {
		c.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"}}`)
	}
	e.publish(prefix+".trades.BTC", `{"n":1}`)
	a.expect(`{"channel":"trades","data":{"n":1}}`)
	b.expect(`{"channel":"trades","data":{"n":1}}`)
	a.roundTrip(`{"method":"unsubscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"unsubscribe","data":{"source":"trades","symbol":"BTC"}}`)
	b.roundTrip(`{"method":"unsubscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"unsubscribe","data":{"source":"trades","symbol":"BTC"}}`)
	if n := e.nc.NumSubscriptions(); n != 0 {
		t.Fatalf("%d NATS subscriptions left", n)
	}
}
