package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/fanout"
	"floodgate/node/nodetest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// histEnv is a hub with history on an embedded NATS server with
// JetStream.
type histEnv struct {
	t    *testing.T
	ns   *server.Server
	dir  string
	hub  *fanout.Hub
	hist *fanout.History
	pub  *nats.Conn
	srcs *fanout.Sources
}

func newHistEnv(t *testing.T, cfg fanout.HistoryConfig, opts fanout.HistoryOptions) *histEnv {
	t.Helper()
	dir := t.TempDir()
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	e := newHistEnvOn(t, ns.ClientURL(), "md", cfg, opts)
	e.ns, e.dir = ns, dir
	return e
}

// newHistEnvOn is newHistEnv on the NATS server at url (with JetStream),
// with the subject prefix prefix (its own stream, FLOODGATE_<PREFIX>).
func newHistEnvOn(t *testing.T, url, prefix string, cfg fanout.HistoryConfig, opts fanout.HistoryOptions) *histEnv {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	srcs, err := fanout.NewSources(fanout.SourcesConfig{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if cfg == (fanout.HistoryConfig{}) {
		cfg = fanout.DefaultHistoryConfig()
	}
	opts.Conn, opts.Sources, opts.Config = nc, srcs, cfg
	if opts.CheckInterval == 0 {
		opts.CheckInterval = 100 * time.Millisecond
	}
	hist, err := fanout.NewHistory(opts)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := fanout.NewHub(fanout.Options{Conn: nc, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	if err := hist.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &histEnv{t: t, hub: hub, hist: hist, pub: pub, srcs: srcs}
}

// publish publishes payloads on subject and waits until the stream has
// stored them (a JetStream publish is acknowledged once stored).
func (e *histEnv) publish(subject string, payloads ...string) {
	e.t.Helper()
	for _, p := range payloads {
		if err := e.pub.Publish(subject, []byte(p)); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.pub.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// stored waits until the stream's last sequence is at least seq.
func (e *histEnv) stored(seq uint64) {
	e.t.Helper()
	js, err := e.pub.JetStream()
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, fmt.Sprintf("seq %d stored", seq), func() bool {
		si, err := js.StreamInfo(e.hist.Stream(), nats.MaxWait(time.Second))
		return err == nil && si.State.LastSeq >= seq
	})
}

func (e *histEnv) join(source, subject string, s fanout.Subscriber, snapshot bool) (*fanout.Subscription, fanout.JoinInfo) {
	e.t.Helper()
	var info fanout.JoinInfo
	sub, err := e.hub.Subscribe(s, fanout.Join{Source: e.srcs.Lookup([]byte(source)), Subject: subject, Snapshot: snapshot,
		Joined: func(ji fanout.JoinInfo) { info = ji }})
	if err != nil {
		e.t.Fatal(err)
	}
	return sub, info
}

var seqPrevRE = regexp.MustCompile(`"data":(.*),"seq":(\d+),"prev":(\d+)}$`)

// seqPrev parses the data, seq and prev of a sequenced frame's wire bytes.
func seqPrev(t *testing.T, wire string) (data string, seq, prev uint64) {
	t.Helper()
	m := seqPrevRE.FindStringSubmatch(wire)
	if m == nil {
		t.Fatalf("frame without seq/prev: %q", wire)
	}
	seq, _ = strconv.ParseUint(m[2], 10, 64)
	prev, _ = strconv.ParseUint(m[3], 10, 64)
	return m[1], seq, prev
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.frames...)
}

// TestHistoryChainsSeqPrev: frames of a channel with history carry the
// stream sequence and the previous sequence of the same channel, other
// channels' messages in between; the stream's seq are the frames' seq.
func TestHistoryChainsSeqPrev(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	btc := &sink{}
	_, info := e.join("trades", "md.trades.BTC", btc, false)
	if !info.Sequenced || info.Seq != 0 || info.Epoch == 0 {
		t.Fatalf("join info on an empty channel: %+v", info)
	}
	e.publish("md.trades.BTC", `{"n":1}`)
	e.publish("md.trades.ETH", `{"n":2}`)
	e.publish("md.trades.BTC", `{"n":3}`, `{"n":4}`)
	waitFor(t, "3 frames", func() bool { return btc.count() == 3 })
	want := [][3]string{{`{"n":1}`, "1", "0"}, {`{"n":3}`, "3", "1"}, {`{"n":4}`, "4", "3"}}
	for i, f := range btc.all() {
		data, seq, prev := seqPrev(t, f)
		if data != want[i][0] || strconv.FormatUint(seq, 10) != want[i][1] || strconv.FormatUint(prev, 10) != want[i][2] {
			t.Fatalf("frame %d: %q, want data %s seq %s prev %s", i, f, want[i][0], want[i][1], want[i][2])
		}
	}
	// A second subscriber acks the latest seq; its first frame's prev is it.
	late := &sink{}
	_, info = e.join("trades", "md.trades.BTC", late, false)
	if info.Seq != 4 {
		t.Fatalf("ack seq %d, want 4", info.Seq)
	}
	e.publish("md.trades.BTC", `{"n":5}`)
	waitFor(t, "the next frame", func() bool { return late.count() == 1 })
	if _, seq, prev := seqPrev(t, late.last()); seq != 5 || prev != 4 {
		t.Fatalf("seq %d prev %d", seq, prev)
	}
}

// TestHistorySnapshotIsLatest: the first subscriber of a channel gets the
// stored latest message as a snapshot (looked up in the stream: nothing
// arrived live on this node yet), and its seq as the ack seq.
func TestHistorySnapshotIsLatest(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	e.publish("md.book.BTC.1", `{"v":1}`, `{"v":2}`)
	e.publish("md.book.ETH.1", `{"v":3}`)
	e.stored(3)
	_, info := e.join("book", "md.book.BTC.1", &sink{}, true)
	if info.Seq != 2 || info.Snapshot == nil {
		t.Fatalf("join info %+v", info)
	}
	if got, want := string(info.Snapshot.Wire()[2:]), `{"channel":"book","data":{"v":2},"seq":2,"snapshot":true}`; got != want {
		t.Fatalf("snapshot %s, want %s", got, want)
	}
	// A conflated joiner: the same state.
	var cinfo fanout.JoinInfo
	if _, err := e.hub.Subscribe(&sink{}, fanout.Join{Source: e.srcs.Lookup([]byte("book")), Subject: "md.book.BTC.1", Interval: fanout.Every100ms,
		Snapshot: true, Joined: func(ji fanout.JoinInfo) { cinfo = ji }}); err != nil {
		t.Fatal(err)
	}
	if cinfo.Seq != 2 || cinfo.Snapshot == nil || !strings.HasSuffix(string(cinfo.Snapshot.Wire()), `{"v":2},"seq":2,"snapshot":true}`) {
		t.Fatalf("conflated join info %+v", cinfo)
	}
	// No message yet: no snapshot, seq 0.
	_, info = e.join("book", "md.book.SOL.1", &sink{}, true)
	if info.Seq != 0 || info.Snapshot != nil {
		t.Fatalf("empty channel: %+v", info)
	}
}

// TestHistoryConflatedFramesChainTheirGroup: conflated frames carry the
// seq of the message and, as prev, the seq of the group's previous frame
// (what its members received), which the ack names first.
func TestHistoryConflatedFramesChainTheirGroup(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	e.publish("md.bbo.BTC", `{"b":0}`)
	e.stored(1)
	s := &sink{}
	var info fanout.JoinInfo
	if _, err := e.hub.Subscribe(s, fanout.Join{Source: e.srcs.Lookup([]byte("bbo")), Subject: "md.bbo.BTC", Interval: fanout.Every100ms,
		Joined: func(ji fanout.JoinInfo) { info = ji }}); err != nil {
		t.Fatal(err)
	}
	if info.Seq != 1 {
		t.Fatalf("ack seq %d", info.Seq)
	}
	for i := 0; i < 30; i++ {
		e.publish("md.bbo.BTC", fmt.Sprintf(`{"b":%d}`, i))
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "the latest conflated", func() bool { return strings.Contains(s.last(), `"seq":31,`) })
	frames := s.all()
	if len(frames) < 2 || len(frames) > 10 {
		t.Fatalf("%d conflated frames for 300 ms at 100 ms", len(frames))
	}
	prev := info.Seq
	for i, f := range frames {
		_, seq, p := seqPrev(t, f)
		if p != prev || seq <= prev {
			t.Fatalf("frame %d: seq %d prev %d, want prev %d", i, seq, p, prev)
		}
		prev = seq
	}
}

// TestHistoryReplay: a replay after since returns exactly the channel's
// later messages, chained from since; admit sees their number first.
func TestHistoryReplay(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	for i := 1; i <= 5; i++ {
		e.publish("md.trades.BTC", fmt.Sprintf(`{"n":%d}`, i))
		e.publish("md.trades.ETH", `{}`)
	}
	e.stored(10)
	sub, info := e.join("trades", "md.trades.BTC", &sink{}, false)
	if info.Seq != 9 {
		t.Fatalf("ack seq %d", info.Seq)
	}
	var admitted int
	res, err := e.hub.Replay(context.Background(), sub, 3, info, func(n int) error { admitted = n; return nil })
	if err != nil || !res.Recovered || admitted != 3 || res.Last != 9 {
		t.Fatalf("replay %+v err %v admitted %d", res, err, admitted)
	}
	prev := uint64(3)
	for i, f := range res.Frames {
		data, seq, p := seqPrev(t, string(f.Wire()))
		if want := fmt.Sprintf(`{"n":%d}`, i+3); data != want || p != prev || seq != uint64(2*i+5) {
			t.Fatalf("frame %d: %s", i, f.Wire())
		}
		prev = seq
	}
	// The latest: nothing to replay, no JetStream call needed.
	if res, err := e.hub.Replay(context.Background(), sub, 9, info, func(int) error { t.Fatal("admit called"); return nil }); err != nil || !res.Recovered || len(res.Frames) != 0 || res.Last != 9 {
		t.Fatalf("replay from the latest: %+v %v", res, err)
	}
	// A seq the stream never had: not recovered.
	if res, _ := e.hub.Replay(context.Background(), sub, 99, info, func(int) error { return nil }); res.Recovered {
		t.Fatalf("future seq recovered: %+v", res)
	}
	// The budget refuses: its error comes back, nothing is replayed.
	refused := errors.New("no credits")
	if _, err := e.hub.Replay(context.Background(), sub, 1, info, func(int) error { return refused }); err != refused {
		t.Fatalf("admit refusal: %v", err)
	}
}

// TestHistoryReplayBounds: since older than what the stream holds (the
// channel's cap dropped it) is not recovered; a replay over
// max_replay_msgs or max_replay_bytes is not made.
func TestHistoryReplayBounds(t *testing.T) {
	cfg := fanout.DefaultHistoryConfig()
	cfg.MaxMsgsPerSubject = 4
	cfg.MaxReplayMsgs = 3
	cfg.MaxReplayBytes = 1024
	e := newHistEnv(t, cfg, fanout.HistoryOptions{})
	for i := 1; i <= 6; i++ {
		e.publish("md.trades.BTC", fmt.Sprintf(`{"n":%d}`, i))
	}
	e.publish("md.trades.ETH", `{"big":"`+strings.Repeat("x", 700)+`"}`, `{"big":"`+strings.Repeat("x", 700)+`"}`)
	e.stored(8)
	sub, info := e.join("trades", "md.trades.BTC", &sink{}, false)
	never := func(int) error { t.Fatal("admit called"); return nil }
	ok := func(int) error { return nil }
	for _, c := range []struct {
		since     uint64
		recovered bool
		frames    int
	}{
		{1, false, 0}, // seq 1 and 2 left the stream (4 per channel)
		{2, false, 0}, // 2 is gone: its successor's predecessor unknown
		{3, true, 3},  // 3 is still held: 4, 5, 6
		{4, true, 2},
		{0, false, 0}, // from the start: 1 and 2 are gone
	} {
		admit := ok
		if !c.recovered {
			admit = never
		}
		res, err := e.hub.Replay(context.Background(), sub, c.since, info, admit)
		if err != nil || res.Recovered != c.recovered || len(res.Frames) != c.frames {
			t.Fatalf("since %d: %+v %v", c.since, res, err)
		}
	}
	// ETH's 2 messages are within max_replay_msgs 3 but over
	// max_replay_bytes 1024.
	esub, einfo := e.join("trades", "md.trades.ETH", &sink{}, false)
	if res, err := e.hub.Replay(context.Background(), esub, 0, einfo, ok); err != nil || res.Recovered {
		t.Fatalf("over max_replay_bytes: %+v %v", res, err)
	}
}

// TestHistoryReplayLimitPerNode: with MaxReplays 1, a replay while another
// one runs gets ErrReplayBusy.
func TestHistoryReplayLimitPerNode(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{MaxReplays: 1})
	e.publish("md.trades.BTC", `{}`, `{}`, `{}`)
	e.publish("md.trades.ETH", `{}`, `{}`)
	e.stored(5)
	sub, info := e.join("trades", "md.trades.BTC", &sink{}, false)
	esub, einfo := e.join("trades", "md.trades.ETH", &sink{}, false)
	var inner error
	res, err := e.hub.Replay(context.Background(), sub, 1, info, func(int) error {
		_, inner = e.hub.Replay(context.Background(), esub, 4, einfo, func(int) error { return nil })
		return nil
	})
	if err != nil || !res.Recovered || !errors.Is(inner, fanout.ErrReplayBusy) {
		t.Fatalf("outer %+v %v, inner %v", res, err, inner)
	}
	// The slot is free again.
	if res, err := e.hub.Replay(context.Background(), esub, 4, einfo, func(int) error { return nil }); err != nil || !res.Recovered {
		t.Fatalf("after: %+v %v", res, err)
	}
}

// TestHistoryAccountSourcesStayOut: account sources are not in the stream
// by default; their channels are live-only; a table may opt in.
func TestHistoryAccountSourcesStayOut(t *testing.T) {
	srcs, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs.HistorySubjects() {
		if strings.HasPrefix(s, "md.account_") {
			t.Fatalf("account subject %s in the history", s)
		}
	}
	if got := strings.Join(srcs.HistorySubjects(), " "); got != "md.bbo.> md.book.> md.candle.> md.mark_price_candle.> md.prices md.trades.>" {
		t.Fatalf("history subjects %s", got)
	}
	yes := true
	opt, err := fanout.NewSources(fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "fills", Params: []fanout.ParamSpec{{Name: "account"}}, Account: "account", History: &yes}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := opt.HistorySubjects(); len(got) != 1 || got[0] != "md.fills.>" {
		t.Fatalf("opted-in account source: %v", got)
	}
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	s := &sink{}
	sub, info := e.join("account_orders", "md.account_orders.A1", s, true)
	if info.Sequenced || e.hub.HasHistory(e.srcs.Lookup([]byte("account_orders"))) {
		t.Fatalf("account channel sequenced: %+v", info)
	}
	e.publish("md.account_orders.A1", `{"o":1}`)
	waitFor(t, "the raw frame", func() bool { return s.count() == 1 })
	if want := `{"channel":"account_orders","data":{"o":1}}`; !strings.HasSuffix(s.last(), want) {
		t.Fatalf("frame %q", s.last())
	}
	if _, err := e.hub.Replay(context.Background(), sub, 0, info, nil); !errors.Is(err, fanout.ErrNoHistory) {
		t.Fatalf("replay of an account channel: %v", err)
	}
}

// TestHistoryOutageFallsBackToRaw: when JetStream goes away (the hub of
// nodetest.JetStreamLeaf is down, the leaf's core NATS still up) the channels deliver from the raw
// subjects without seq/prev within 5 s, Err says why, and they come back
// (with a prev gap a client can see) when JetStream returns.
func TestHistoryOutageFallsBackToRaw(t *testing.T) {
	js := nodetest.NewJetStreamLeaf(t)
	nc, err := nats.Connect(js.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pub, err := nats.Connect(js.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	srcs, _ := fanout.NewSources(fanout.SourcesConfig{})
	cfg := fanout.DefaultHistoryConfig()
	cfg.Domain = "hub"
	var mu sync.Mutex
	var changes []string
	hist, err := fanout.NewHistory(fanout.HistoryOptions{Conn: nc, Sources: srcs, Config: cfg, CheckInterval: 200 * time.Millisecond,
		OnChange: func(err error) {
			mu.Lock()
			changes = append(changes, fmt.Sprint(err))
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := fanout.NewHub(fanout.Options{Conn: nc, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	if err := hist.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hist.Run(ctx) }()
	defer func() { cancel(); <-done }()

	s := &sink{}
	if _, err := hub.Subscribe(s, fanout.Join{Source: srcs.Lookup([]byte("trades")), Subject: "md.trades.BTC"}); err != nil {
		t.Fatal(err)
	}
	publish := func(p string) {
		_ = pub.Publish("md.trades.BTC", []byte(p))
		_ = pub.Flush()
	}
	publish(`{"n":1}`)
	waitFor(t, "a sequenced frame", func() bool { return s.count() == 1 })
	seqPrev(t, s.last())

	js.StopHub()
	start := time.Now()
	deadline := start.Add(6 * time.Second)
	for !strings.HasSuffix(s.last(), `"data":{"raw":1}}`) {
		if time.Now().After(deadline) {
			t.Fatalf("no raw delivery %v after the outage: last %q", time.Since(start), s.last())
		}
		publish(`{"raw":1}`)
		time.Sleep(20 * time.Millisecond)
	}
	fell := time.Since(start)
	t.Logf("live-only delivery %v after JetStream went away", fell)
	if fell > 5*time.Second {
		t.Fatalf("fell back after %v", fell)
	}
	if hist.Err() == nil {
		t.Fatal("Err is nil during the outage")
	}
	if err := js.StartHub(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !seqPrevRE.MatchString(s.last()) {
		if time.Now().After(deadline) {
			t.Fatalf("no sequenced frame after JetStream returned: %q", s.last())
		}
		publish(`{"back":1}`)
		time.Sleep(20 * time.Millisecond)
	}
	// The messages of the outage were never stored: the stream goes on
	// from seq 2, and the first sequenced frame's prev names a message
	// stored after the return (delivered raw while the channels moved
	// back) or seq 1.
	if _, seq, prev := seqPrev(t, s.last()); prev < 1 || seq <= prev {
		t.Fatalf("after the outage: seq %d prev %d", seq, prev)
	}
	if hist.Err() != nil {
		t.Fatalf("Err after the return: %v", hist.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[1] != "<nil>" {
		t.Fatalf("changes %q", changes)
	}
}

// TestHistoryReplayOverMaxMsgsIsNotMade: more messages after since than
// max_replay_msgs: not recovered, nothing read, nothing charged.
func TestHistoryReplayOverMaxMsgsIsNotMade(t *testing.T) {
	cfg := fanout.DefaultHistoryConfig()
	cfg.MaxReplayMsgs = 2
	e := newHistEnv(t, cfg, fanout.HistoryOptions{})
	e.publish("md.trades.BTC", `{}`, `{}`, `{}`, `{}`)
	e.stored(4)
	sub, info := e.join("trades", "md.trades.BTC", &sink{}, false)
	res, err := e.hub.Replay(context.Background(), sub, 1, info, func(int) error { t.Fatal("admit called"); return nil })
	if err != nil || res.Recovered || len(res.Frames) != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	if res, err := e.hub.Replay(context.Background(), sub, 2, info, func(n int) error { return nil }); err != nil || !res.Recovered || len(res.Frames) != 2 {
		t.Fatalf("within the bound: %+v %v", res, err)
	}
}

// TestHistoryReplayFromMemory: after one replay read the stream, the next
// ones of the channel (the rest of a resume storm) are served from its
// recent frames, extended by the live ones, with the same frames a read
// would give; the first replay's read counts in history_replays_running
// only.
func TestHistoryReplayFromMemory(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	for i := 1; i <= 5; i++ {
		e.publish("md.trades.BTC", fmt.Sprintf(`{"n":%d}`, i))
	}
	e.stored(5)
	s := &sink{}
	sub, info := e.join("trades", "md.trades.BTC", s, false)
	ok := func(int) error { return nil }
	first, err := e.hub.Replay(context.Background(), sub, 2, info, ok)
	if err != nil || !first.Recovered || len(first.Frames) != 3 || e.hist.FromMemory() != 0 {
		t.Fatalf("first %+v %v (from memory %d)", first, err, e.hist.FromMemory())
	}
	// Live frames extend the tail: a later resume from 2 gets 3..7.
	e.publish("md.trades.BTC", `{"n":6}`, `{"n":7}`)
	waitFor(t, "the live frames", func() bool { return s.count() == 2 })
	sub2, info2 := e.join("trades", "md.trades.BTC", &sink{}, false)
	var admitted int
	res, err := e.hub.Replay(context.Background(), sub2, 2, info2, func(n int) error { admitted = n; return nil })
	if err != nil || !res.Recovered || len(res.Frames) != 5 || admitted != 5 || res.Last != 7 || e.hist.FromMemory() != 1 {
		t.Fatalf("from memory %+v %v admitted %d (from memory %d)", res, err, admitted, e.hist.FromMemory())
	}
	for i, f := range res.Frames {
		if i < 3 && f != first.Frames[i] {
			t.Fatalf("frame %d is not the one read", i)
		}
		if _, seq, prev := seqPrev(t, string(f.Wire())); seq != uint64(3+i) || prev != uint64(2+i) {
			t.Fatalf("frame %d: %s", i, f.Wire())
		}
	}
	// Older than the tail: read from the stream again.
	if res, err := e.hub.Replay(context.Background(), sub2, 1, info2, ok); err != nil || !res.Recovered || len(res.Frames) != 6 || e.hist.FromMemory() != 1 {
		t.Fatalf("older than the tail %+v %v", res, err)
	}
}

// TestHistoryStreamDeletedIsMadeAgain: a stream deleted under a running
// history is made again at the next check with a new epoch; what the
// channels knew of the old one (latest seq, snapshot, recent frames) is
// forgotten, and seq restarts.
func TestHistoryStreamDeletedIsMadeAgain(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{CheckInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.hist.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s := &sink{}
	sub, info := e.join("trades", "md.trades.BTC", s, false)
	e.publish("md.trades.BTC", `{"n":1}`, `{"n":2}`)
	waitFor(t, "2 frames", func() bool { return s.count() == 2 })
	if _, err := e.hub.Replay(context.Background(), sub, 1, info, func(int) error { return nil }); err != nil {
		t.Fatal(err) // leaves a recent tail
	}
	epoch := e.hist.Epoch()
	js, _ := e.pub.JetStream()
	if err := js.DeleteStream(e.hist.Stream()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new epoch", func() bool { return e.hist.Epoch() != epoch })
	_, info = e.join("trades", "md.trades.BTC", &sink{}, true)
	if info.Epoch == epoch || info.Seq != 0 || info.Snapshot != nil {
		t.Fatalf("join after the new stream: %+v (old epoch %d)", info, epoch)
	}
	e.publish("md.trades.BTC", `{"n":3}`)
	waitFor(t, "the frame of the new stream", func() bool { return s.count() == 3 })
	if _, seq, prev := seqPrev(t, s.last()); seq != 1 || prev != 0 {
		t.Fatalf("first frame of the new stream: %s", s.last())
	}
}

// TestHistoryRecentTailsAreBounded: at most 256 channels of a node keep
// recent frames; replays on more channels read the stream without one.
func TestHistoryRecentTailsAreBounded(t *testing.T) {
	e := newHistEnv(t, fanout.HistoryConfig{}, fanout.HistoryOptions{})
	ok := func(int) error { return nil }
	for i := 0; i < 260; i++ {
		sub, info := e.join("trades", fmt.Sprintf("md.trades.S%d", i), &sink{}, false)
		if res, err := e.hub.Replay(context.Background(), sub, 0, info, ok); err != nil || !res.Recovered {
			t.Fatalf("channel %d: %+v %v", i, res, err)
		}
	}
	if n := e.hist.RecentTails(); n != 256 {
		t.Fatalf("%d channels with recent frames", n)
	}
	e.hub.Close()
	if n := e.hist.RecentTails(); n != 0 {
		t.Fatalf("%d channels with recent frames after the hub closed", n)
	}
}
