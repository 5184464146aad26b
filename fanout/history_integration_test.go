//go:build integration

package fanout_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"floodgate/fanout"

	"github.com/nats-io/nats.go"
)

// TestIntegrationHistory runs the history against the NATS server of
// NATS_URL (Debian's nats-server 2.9.10 in CI, the embedded 2.15 in the
// unit tests): RePublish's Nats-Sequence and Nats-Last-Sequence headers
// give the frames' seq and prev, the direct get of the last message gives
// the snapshot, a filtered consumer from since+1 gives the replay, and the
// per-channel cap makes an old since unrecovered. Its own subject prefix,
// so its own stream, deleted afterwards.
func TestIntegrationHistory(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		t.Skip("NATS_URL not set")
	}
	rnd := make([]byte, 4)
	_, _ = rand.Read(rnd)
	prefix := "it" + hex.EncodeToString(rnd)
	cfg := fanout.DefaultHistoryConfig()
	cfg.MaxMsgsPerSubject = 5
	e := newHistEnvOn(t, url, prefix, cfg, fanout.HistoryOptions{})
	t.Cleanup(func() {
		js, _ := e.pub.JetStream()
		if err := js.DeleteStream(e.hist.Stream(), nats.MaxWait(5*time.Second)); err != nil {
			t.Errorf("delete stream %s: %v", e.hist.Stream(), err)
		}
	})
	btc := prefix + ".trades.BTC"
	var srv string
	if info := e.pub.ConnectedServerVersion(); info != "" {
		srv = info
	}
	t.Logf("nats-server %s, stream %s", srv, e.hist.Stream())

	s := &sink{}
	_, info := e.join("trades", btc, s, false)
	if !info.Sequenced || info.Epoch == 0 {
		t.Fatalf("join info %+v", info)
	}
	for i := 1; i <= 3; i++ {
		e.publish(btc, fmt.Sprintf(`{"n":%d}`, i))
		e.publish(prefix+".trades.ETH", `{}`)
	}
	waitFor(t, "3 frames", func() bool { return s.count() == 3 })
	var prev uint64
	for i, f := range s.all() {
		data, seq, p := seqPrev(t, f)
		if data != fmt.Sprintf(`{"n":%d}`, i+1) || p != prev || seq <= prev {
			t.Fatalf("frame %d %q after seq %d", i, f, prev)
		}
		prev = seq
	}
	e.stored(6)

	// Snapshot: the latest stored message, looked up on a new channel.
	_, sinfo := e.join("trades", prefix+".trades.ETH", &sink{}, true)
	if sinfo.Seq != 6 || sinfo.Snapshot == nil || !strings.HasSuffix(string(sinfo.Snapshot.Wire()), `{},"seq":6,"snapshot":true}`) {
		t.Fatalf("snapshot join %+v", sinfo)
	}

	// Replay from the first: seq 3 and 5.
	sub, rinfo := e.join("trades", btc, &sink{}, false)
	res, err := e.hub.Replay(context.Background(), sub, 1, rinfo, func(int) error { return nil })
	if err != nil || !res.Recovered || len(res.Frames) != 2 || res.Last != 5 {
		t.Fatalf("replay %+v %v", res, err)
	}
	// Past the cap of 5 per channel, the first messages are gone: from 0
	// is not recovered (from 1 would be, from the channel's recent frames
	// in memory since the replay above).
	for i := 4; i <= 10; i++ {
		e.publish(btc, fmt.Sprintf(`{"n":%d}`, i))
	}
	e.stored(13)
	if res, err := e.hub.Replay(context.Background(), sub, 0, rinfo, func(int) error { return nil }); err != nil || res.Recovered {
		t.Fatalf("replay past the cap %+v %v", res, err)
	}
}
