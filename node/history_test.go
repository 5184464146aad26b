package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/fanout"
	"floodgate/limiter"
	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/nats-io/nats.go"
)

// wireFrame is a server frame as a client decodes it.
type wireFrame struct {
	Channel   string          `json:"channel"`
	Data      json.RawMessage `json:"data"`
	Seq       *uint64         `json:"seq"`
	Prev      *uint64         `json:"prev"`
	Epoch     int64           `json:"epoch"`
	Recovered *bool           `json:"recovered"`
	Snapshot  bool            `json:"snapshot"`
	ID        json.RawMessage `json:"id"`
	raw       string
}

func (c *client) frame() wireFrame {
	c.t.Helper()
	raw := c.read()
	var f wireFrame
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		c.t.Fatalf("frame %s: %v", raw, err)
	}
	f.raw = raw
	return f
}

// n is the "n" of a market frame's data.
func (f wireFrame) n(t *testing.T) int {
	t.Helper()
	var d struct{ N *int }
	if json.Unmarshal(f.Data, &d) != nil || d.N == nil {
		t.Fatalf("no n in %s", f.raw)
	}
	return *d.N
}

// chain reads count market frames of a channel and checks that each one's
// prev is the seq before it (starting from prev); it returns the frames'
// n values and the last seq.
func (c *client) chain(count int, prev uint64) ([]int, uint64) {
	c.t.Helper()
	var ns []int
	for range count {
		f := c.frame()
		if f.Seq == nil || f.Prev == nil {
			c.t.Fatalf("market frame without seq/prev: %s", f.raw)
		}
		if *f.Prev != prev || *f.Seq <= prev {
			c.t.Fatalf("seq %d prev %d after seq %d: %s", *f.Seq, *f.Prev, prev, f.raw)
		}
		prev = *f.Seq
		ns = append(ns, f.n(c.t))
	}
	return ns, prev
}

// subscribe sends a subscribe and returns its ack (failing on anything
// else).
func (c *client) subscribe(params string) wireFrame {
	c.t.Helper()
	c.send(`{"method":"subscribe","params":` + params + `,"id":1}`)
	f := c.frame()
	if f.Channel != "subscribe" {
		c.t.Fatalf("subscribe %s: %s", params, f.raw)
	}
	return f
}

// publisher returns a function that publishes {"n":<n>} messages on a
// subject as a feed would (core NATS) and waits until NATS has them.
func publisher(t *testing.T, url string) func(subject string, n ...int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return func(subject string, ns ...int) {
		t.Helper()
		for _, n := range ns {
			if err := nc.Publish(subject, fmt.Appendf(nil, `{"n":%d}`, n)); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// stored waits until the history stream holds seq (JetStream stores what
// a feed publishes asynchronously).
func stored(t *testing.T, url, domain string, seq uint64) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	opts := []nats.JSOpt{nats.MaxWait(time.Second)}
	if domain != "" {
		opts = append(opts, nats.Domain(domain))
	}
	js, err := nc.JetStream(opts...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("seq %d stored", seq), func() bool {
		si, err := js.StreamInfo("FLOODGATE_MD")
		return err == nil && si.State.LastSeq >= seq
	})
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func sameInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// TestHistoryResumeGetsExactlyWhatItMissed: a client of BTC trades reads
// five messages with chained seq/prev, disconnects, misses seven (other
// channels publishing in between), resumes with since: recovered, exactly
// those seven, chained from its last seq, then the live ones, while the
// feed keeps publishing through the resume: no gap, no duplicate.
func TestHistoryResumeGetsExactlyWhatItMissed(t *testing.T) {
	n := newCluster(t).node(nodeOpts{history: node.HistoryAuto})
	pub := publisher(t, n.n.NATSURL)
	c := n.dial(nil)
	ack := c.subscribe(`{"source":"trades","symbol":"BTC"}`)
	if ack.Seq == nil || *ack.Seq != 0 || ack.Epoch == 0 || ack.Recovered != nil {
		t.Fatalf("ack %s", ack.raw)
	}
	pub("md.trades.BTC", seq(5)...)
	got, last := c.chain(5, 0)
	if !sameInts(got, seq(5)) {
		t.Fatalf("live %v", got)
	}
	_ = c.c.CloseNow()

	for i := 6; i <= 12; i++ {
		pub("md.trades.BTC", i)
		pub("md.trades.ETH", 100+i)
	}
	c2 := n.dial(nil)
	ack = c2.subscribe(fmt.Sprintf(`{"source":"trades","symbol":"BTC","since":%d}`, last))
	if ack.Recovered == nil || !*ack.Recovered || ack.Seq == nil || ack.Epoch == 0 {
		t.Fatalf("resume ack %s", ack.raw)
	}
	if want := fmt.Sprintf(`"data":{"source":"trades","symbol":"BTC","since":%d}`, last); !strings.Contains(ack.raw, want) {
		t.Fatalf("ack %s lacks %s", ack.raw, want)
	}
	got, last = c2.chain(7, last)
	if !sameInts(got, span(6, 12)) {
		t.Fatalf("replayed %v, want 6..12", got)
	}
	pub("md.trades.BTC", 13, 14)
	if got, last = c2.chain(2, last); !sameInts(got, []int{13, 14}) {
		t.Fatalf("live after the replay %v", got)
	}

	// Resume while the feed publishes: the replay and the live frames
	// held meanwhile meet without a gap or a duplicate.
	_ = c2.c.CloseNow()
	pub("md.trades.BTC", span(15, 40)...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 41; i <= 400; i++ {
			pub("md.trades.BTC", i)
			if i == 200 {
				close(stop)
			}
		}
	}()
	c3 := n.dial(nil)
	<-stop // the resume lands in the middle of the stream
	ack = c3.subscribe(fmt.Sprintf(`{"source":"trades","symbol":"BTC","since":%d}`, last))
	if ack.Recovered == nil || !*ack.Recovered {
		t.Fatalf("ack %s", ack.raw)
	}
	wg.Wait()
	// The frames are 15..400 in order; chain checks seq/prev (the first
	// prev is the seq of 14, which the client had).
	if got, _ = c3.chain(386, last); !sameInts(got, span(15, 400)) {
		t.Fatalf("frames after the resume: %d of them, %v...", len(got), got[:min(len(got), 10)])
	}
}

// TestHistorySinceOlderThanRetention: the channel keeps 3 messages; a
// resume from the first of 10 is recovered:false, gets nothing replayed,
// then the live messages; with snapshot:true it gets the latest value
// first.
func TestHistorySinceOlderThanRetention(t *testing.T) {
	n := newCluster(t).node(nodeOpts{history: node.HistoryAuto, edit: func(f *node.File) { f.History.MaxMsgsPerSubject = 3 }})
	pub := publisher(t, n.n.NATSURL)
	pub("md.trades.BTC", seq(10)...)
	stored(t, n.n.NATSURL, "", 10)
	c := n.dial(nil)
	ack := c.subscribe(`{"source":"trades","symbol":"BTC","since":1}`)
	if ack.Recovered == nil || *ack.Recovered || ack.Seq == nil || *ack.Seq != 10 {
		t.Fatalf("ack %s", ack.raw)
	}
	pub("md.trades.BTC", 11)
	f := c.frame()
	if f.n(t) != 11 || *f.Prev != 10 {
		t.Fatalf("first frame %s", f.raw)
	}
	c2 := n.dial(nil)
	ack = c2.subscribe(`{"source":"trades","symbol":"BTC","since":2,"snapshot":true}`)
	if ack.Recovered == nil || *ack.Recovered || !strings.Contains(ack.raw, `"since":2,"snapshot":true}`) {
		t.Fatalf("ack %s", ack.raw)
	}
	if f := c2.frame(); !f.Snapshot || f.n(t) != 11 || *f.Seq != 11 || f.Prev != nil {
		t.Fatalf("snapshot %s", f.raw)
	}
	// A recovered resume with snapshot:true gets the replay, no snapshot.
	c3 := n.dial(nil)
	if ack := c3.subscribe(`{"source":"trades","symbol":"BTC","since":9,"snapshot":true}`); !*ack.Recovered {
		t.Fatalf("ack %s", ack.raw)
	}
	if got, _ := c3.chain(2, 9); !sameInts(got, []int{10, 11}) {
		t.Fatalf("replay %v", got)
	}
}

// TestHistorySnapshotIsTheLatestValue: snapshot:true sends the channel's
// latest message right after the ack, marked "snapshot":true, with the
// ack's seq; the next live frame's prev is that seq. With conflate_ms the
// snapshot comes the same way, then conflated frames chained from it.
func TestHistorySnapshotIsTheLatestValue(t *testing.T) {
	n := newCluster(t).node(nodeOpts{history: node.HistoryAuto})
	pub := publisher(t, n.n.NATSURL)
	pub("md.book.BTC.1", 1, 2, 3)
	pub("md.book.ETH.1", 4)
	stored(t, n.n.NATSURL, "", 4)
	c := n.dial(nil)
	ack := c.subscribe(`{"source":"book","symbol":"BTC","agg_level":1,"snapshot":true}`)
	if *ack.Seq != 3 || !strings.Contains(ack.raw, `"agg_level":1,"snapshot":true}`) {
		t.Fatalf("ack %s", ack.raw)
	}
	snap := c.frame()
	if snap.raw != `{"channel":"book","data":{"n":3},"seq":3,"snapshot":true}` {
		t.Fatalf("snapshot %s", snap.raw)
	}
	pub("md.book.BTC.1", 5)
	if got, _ := c.chain(1, 3); !sameInts(got, []int{5}) {
		t.Fatalf("live %v", got)
	}
	// Conflated: snapshot, then frames chained from it.
	cc := n.dial(nil)
	ack = cc.subscribe(`{"source":"book","symbol":"BTC","agg_level":1,"conflate_ms":100,"snapshot":true}`)
	if *ack.Seq != 5 {
		t.Fatalf("conflated ack %s", ack.raw)
	}
	if f := cc.frame(); !f.Snapshot || *f.Seq != 5 {
		t.Fatalf("conflated snapshot %s", f.raw)
	}
	pub("md.book.BTC.1", 6, 7, 8)
	prev := uint64(5)
	for {
		f := cc.frame()
		if *f.Prev != prev {
			t.Fatalf("conflated frame %s after seq %d", f.raw, prev)
		}
		prev = *f.Seq
		if f.n(t) == 8 {
			break
		}
	}
	// A channel without a message yet: the ack says seq 0, no snapshot.
	e := n.dial(nil)
	if ack := e.subscribe(`{"source":"book","symbol":"SOL","agg_level":1,"snapshot":true}`); *ack.Seq != 0 {
		t.Fatalf("empty channel ack %s", ack.raw)
	}
	e.send(`{"method":"ping"}`)
	if f := e.frame(); f.Channel != "pong" {
		t.Fatalf("frame after an empty channel's ack: %s", f.raw)
	}
}

// TestHistoryTwoNodesSameSeqAndCrossNodeResume: two nodes on one NATS
// (one stream) give every message the same seq and prev; a client that
// read from node A resumes on node B with A's seq and gets exactly what
// it missed.
func TestHistoryTwoNodesSameSeqAndCrossNodeResume(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(nodeOpts{shared: true, history: node.HistoryOn})
	b := cl.node(nodeOpts{shared: true, history: node.HistoryOn})
	pub := publisher(t, a.n.NATSURL)
	ca, cb := a.dial(nil), b.dial(nil)
	acka, ackb := ca.subscribe(`{"source":"trades","symbol":"BTC"}`), cb.subscribe(`{"source":"trades","symbol":"BTC"}`)
	if acka.Epoch != ackb.Epoch || acka.Epoch == 0 {
		t.Fatalf("epochs %d %d", acka.Epoch, ackb.Epoch)
	}
	pub("md.trades.BTC", seq(5)...)
	var sa, sb []string
	for range 5 {
		fa, fb := ca.frame(), cb.frame()
		sa, sb = append(sa, fa.raw), append(sb, fb.raw)
	}
	if strings.Join(sa, "\n") != strings.Join(sb, "\n") {
		t.Fatalf("node A:\n%s\nnode B:\n%s", strings.Join(sa, "\n"), strings.Join(sb, "\n"))
	}
	var last wireFrame
	_ = json.Unmarshal([]byte(sa[4]), &last)
	_ = ca.c.CloseNow()
	pub("md.trades.BTC", 6, 7, 8, 9)
	gotB, _ := cb.chain(4, *last.Seq) // what B's live client saw
	if !sameInts(gotB, []int{6, 7, 8, 9}) {
		t.Fatalf("node B live %v", gotB)
	}
	cr := b.dial(nil)
	ack := cr.subscribe(fmt.Sprintf(`{"source":"trades","symbol":"BTC","since":%d}`, *last.Seq))
	if !*ack.Recovered || ack.Epoch != acka.Epoch {
		t.Fatalf("cross-node resume ack %s", ack.raw)
	}
	if got, _ := cr.chain(4, *last.Seq); !sameInts(got, []int{6, 7, 8, 9}) {
		t.Fatalf("cross-node resume got %v", got)
	}
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, n *testNode) (int, string) {
	t.Helper()
	resp, err := http.Get(n.n.APIURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHistoryOutageDegradesToLiveOnly: with --history on and the
// JetStream servers gone (the node's NATS, a leaf node, still up), the
// node is not ready with reason history within 5 s and its clients keep
// getting live frames, without seq; when JetStream returns the node is
// ready again and the frames carry seq again.
func TestHistoryOutageDegradesToLiveOnly(t *testing.T) {
	js := nodetest.NewJetStreamLeaf(t)
	n := newCluster(t).node(nodeOpts{history: node.HistoryOn, natsURL: js.URL, edit: func(f *node.File) { f.History.Domain = "hub" }})
	if code, body := readyz(t, n); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	pub := publisher(t, js.URL)
	c := n.dial(nil)
	c.subscribe(`{"source":"trades","symbol":"BTC"}`)
	pub("md.trades.BTC", 1)
	if f := c.frame(); f.Seq == nil {
		t.Fatalf("frame %s", f.raw)
	}
	js.StopHub()
	start := time.Now()
	waitFor(t, 5*time.Second, "readyz reason history", func() bool {
		code, body := readyz(t, n)
		return code == 503 && strings.Contains(body, `"history"`)
	})
	t.Logf("not ready (history) %v after the outage", time.Since(start))
	// A feed publishing every 20 ms; the client reads until a frame
	// comes without seq (messages published while the channels still
	// listened to the republished subject are lost: JetStream stored and
	// republished nothing).
	feed := func() func() {
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for i := 2; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				pub("md.trades.BTC", i)
			}
		}()
		return func() { close(stop); <-done }
	}
	stopFeed := feed()
	for {
		f := c.frame()
		if f.Seq == nil {
			t.Logf("live-only frame %v after the outage: %s", time.Since(start), f.raw)
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("live-only delivery %v after the outage", d)
	}
	stopFeed()
	if err := js.StartHub(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "ready again", func() bool { code, _ := readyz(t, n); return code == 200 })
	stopFeed = feed()
	defer stopFeed()
	deadline := time.Now().Add(5 * time.Second)
	for c.frame().Seq == nil {
		if time.Now().After(deadline) {
			t.Fatal("no sequenced frame after JetStream returned")
		}
	}
}

// TestHistoryParamErrors: each malformed or unsupported history option
// gets its exact error; the connection and another client stay fine, and
// nothing is subscribed.
func TestHistoryParamErrors(t *testing.T) {
	cl := newCluster(t)
	lim := limiter.DefaultConfig()
	lim.Costs.Replay = 500 // a replay of 1 to 100 messages costs more than the 125 credits of an anonymous IP
	lim.Tiers.Anonymous.ConnMessagesPerSecond, lim.Tiers.Anonymous.ConnBurst = 1000, 1000
	n := cl.node(nodeOpts{history: node.HistoryAuto, limits: &lim})
	pub := publisher(t, n.n.NATSURL)
	pub("md.trades.BTC", 1, 2, 3)
	stored(t, n.n.NATSURL, "", 3)
	bystander := n.dial(nil)
	bystander.subscribe(`{"source":"trades","symbol":"ETH"}`)
	c := n.dial(nil)
	for _, tc := range []struct{ params, msg string }{
		{`{"source":"trades","symbol":"BTC","since":"1"}`, `INVALID_PARAMS","message":"invalid param \"since\""`},
		{`{"source":"trades","symbol":"BTC","since":-1}`, `INVALID_PARAMS","message":"invalid param \"since\""`},
		{`{"source":"trades","symbol":"BTC","since":1.5}`, `INVALID_PARAMS","message":"invalid param \"since\""`},
		{`{"source":"trades","symbol":"BTC","since":18446744073709551616}`, `INVALID_PARAMS","message":"invalid param \"since\""`},
		{`{"source":"trades","symbol":"BTC","snapshot":1}`, `INVALID_PARAMS","message":"invalid param \"snapshot\""`},
		{`{"source":"account_orders","account":"A1","since":1}`, `INVALID_PARAMS","message":"no history on this channel for param \"since\""`},
		{`{"source":"account_orders","account":"A1","snapshot":true}`, `INVALID_PARAMS","message":"no history on this channel for param \"snapshot\""`},
		{`{"source":"book","symbol":"BTC","agg_level":1,"since":1,"conflate_ms":100}`, `INVALID_PARAMS","message":"since cannot be combined with conflate_ms"`},
		{`{"source":"trades","symbol":"BTC","since":0}`, `RATE_LIMITED","message":"Rate limit exceeded: credits","retry_after_ms":`},
	} {
		c.send(`{"method":"subscribe","params":` + tc.params + `,"id":7}`)
		f := c.frame()
		if f.Channel != "error" || !strings.Contains(f.raw, `{"channel":"error","data":{"code":"`+tc.msg) || string(f.ID) != "7" {
			t.Fatalf("%s: %s", tc.params, f.raw)
		}
		c.send(`{"method":"ping"}`)
		if f := c.frame(); f.Channel != "pong" {
			t.Fatalf("after %s: %s", tc.params, f.raw)
		}
	}
	// Nothing was subscribed: a plain subscribe of BTC is accepted (not
	// ALREADY_SUBSCRIBED), and the bystander still gets its channel.
	if ack := c.subscribe(`{"source":"trades","symbol":"BTC"}`); *ack.Seq != 3 {
		t.Fatalf("ack %s", ack.raw)
	}
	pub("md.trades.ETH", 9)
	if f := bystander.frame(); f.n(t) != 9 {
		t.Fatalf("bystander %s", f.raw)
	}

	// --history off: since and snapshot are refused, frames carry no seq.
	off := cl.node(nodeOpts{history: node.HistoryOff})
	o := off.dial(nil)
	o.send(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","snapshot":true}}`)
	if f := o.frame(); !strings.Contains(f.raw, `"code":"INVALID_PARAMS","message":"no history on this channel for param \"snapshot\""`) {
		t.Fatalf("history off: %s", f.raw)
	}
	if ack := o.subscribe(`{"source":"trades","symbol":"BTC"}`); ack.Seq != nil || ack.Epoch != 0 {
		t.Fatalf("history off ack %s", ack.raw)
	}
}

// TestHistoryOnWithoutJetStreamIsNotReady: --history on against a NATS
// server without JetStream: the node starts, is not ready with reason
// history, and serves live frames without seq; a resume goes live with
// recovered:false.
func TestHistoryOnWithoutJetStreamIsNotReady(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedOptions{Listen: "127.0.0.1:0"}) // no JetStream
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	n := newCluster(t).node(nodeOpts{history: node.HistoryOn, natsURL: ns.ClientURL()})
	if code, body := readyz(t, n); code != 503 || !strings.Contains(body, `"history"`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	c := n.dial(nil)
	if ack := c.subscribe(`{"source":"trades","symbol":"BTC","since":5}`); ack.Seq != nil || ack.Recovered == nil || *ack.Recovered {
		t.Fatalf("ack %s", ack.raw)
	}
	publisher(t, ns.ClientURL())("md.trades.BTC", 1)
	if f := c.frame(); f.Seq != nil || f.n(t) != 1 {
		t.Fatalf("frame %s", f.raw)
	}
}
