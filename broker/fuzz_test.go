package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/valyala/fastjson"
)

// histHub is a hub without NATS whose sources with history replay: every
// join reports seq 5 of epoch 7 and a snapshot; a replay after since is
// recovered when since is even (one frame), not recovered otherwise.
type histHub struct{ nopHub }

var histSnap = fanout.NewFrame("trades", []byte(`{"snap":1}`))

func (histHub) Subscribe(_ fanout.Subscriber, j fanout.Join) (*fanout.Subscription, error) {
	info := fanout.JoinInfo{Sequenced: j.Source.History, Seq: 5, Epoch: 7}
	if j.Snapshot {
		info.Snapshot = histSnap
	}
	j.Joined(info)
	return nil, nil
}
func (histHub) HasHistory(src *fanout.Source) bool { return src.History }
func (histHub) Replay(_ context.Context, _ *fanout.Subscription, since uint64, _ fanout.JoinInfo, admit func(int) error) (fanout.ReplayResult, error) {
	if since%2 == 1 {
		return fanout.ReplayResult{}, nil
	}
	if err := admit(1); err != nil {
		return fanout.ReplayResult{}, err
	}
	return fanout.ReplayResult{Recovered: true, Last: since + 1, Frames: []*fanout.Frame{fanout.NewFrame("trades", []byte(`{"replayed":1}`))}}, nil
}

// FuzzParseFrame feeds arbitrary client frames to the parser and the
// channel resolver: it must never panic; every reply is valid JSON (an
// object, in valid UTF-8); and a frame it accepts maps to exactly the
// subject <prefix>.<source>.<value>... of the params the frame holds (as
// encoding/json reads them): one token per param, each the param's value
// and a safe token, so a value with a dot cannot add a token. The history
// options: a subscribe is acked only when "since" (if present) is an
// integer from 0 to 2^64-1 and "snapshot" (if present) a boolean, on a
// source with history, since without conflate_ms; the ack echoes since
// exactly, says "recovered" exactly when since was given, and carries
// "seq" and "epoch" exactly for sources with history.
func FuzzParseFrame(f *testing.F) {
	for _, seed := range []string{
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"},"id":1}`,
		`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1}}`,
		`{"method":"unsubscribe","params":{"source":"candle","symbol":"ETH","interval":"1m"}}`,
		`{"method":"ping","id":"x"}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC.>"}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"\u002a"}}`,
		`{"method":"subscribe","params":{"source":"account_orders","account":"abc"}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC.X"}}`,
		`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1,"conflate_ms":250}}`,
		`{"method":"unsubscribe","params":{"source":"bbo","symbol":"A","conflate_ms":100}}`,
		`{"method":"ping","id":NaN}`, `{"method":"ping","id":-Inf}`, `{"method":"ping","id":+5}`, `{"method":"ping","id":--}`,
		`{"method":"ping","id":01}`, `{"method":"ping","id":1e400}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":42},"id":1}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":43,"snapshot":true}}`,
		`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1,"snapshot":true,"conflate_ms":250}}`,
		`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1,"since":0,"conflate_ms":250}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":18446744073709551615}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":18446744073709551616}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":-0}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","since":1e2}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC","snapshot":"true"}}`,
		`{"method":"subscribe","params":{"source":"account_orders","account":"a","since":1}}`,
		`{"method":"unsubscribe","params":{"source":"trades","symbol":"BTC","since":1,"snapshot":false}}`,
		`[1,2]`, `{"id":{}}`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	src, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		f.Fatal(err)
	}
	var p fastjson.Parser
	srv, err := broker.New(broker.Options{Hub: histHub{}, Sources: src})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	f.Fuzz(func(t *testing.T, msg []byte) {
		// A fresh session per frame: "already subscribed" would hide acks.
		sess := broker.NewTestSession(srv)
		// Every reply the session sends is valid JSON in valid UTF-8.
		sess.Handle(msg)
		var ack map[string]any
		for _, reply := range sess.DrainTexts() {
			var obj map[string]any
			dec := json.NewDecoder(strings.NewReader(reply))
			dec.UseNumber()
			if dec.Decode(&obj) != nil || dec.More() || !utf8.ValidString(reply) {
				t.Fatalf("reply %q to %q is not a valid JSON object", reply, msg)
			}
			if obj["channel"] == "subscribe" {
				ack = obj
			}
		}
		if ack != nil {
			checkHistoryAck(t, src, msg, ack)
		}
		op, code, subject, _ := broker.ParseFrame(&p, src, msg, make([]byte, 0, 64))
		if code != "" || subject == nil {
			return
		}
		if op != broker.OpSubscribe && op != broker.OpUnsubscribe {
			t.Fatalf("subject for op %v", op)
		}
		toks := bytes.Split(subject, []byte("."))
		if len(toks) < 2 || string(toks[0]) != "md" || src.Lookup(toks[1]) == nil {
			t.Fatalf("bad subject %q from %q", subject, msg)
		}
		for _, tok := range toks {
			if !fanout.ValidValue(tok) {
				t.Fatalf("unsafe token %q in subject %q from %q", tok, subject, msg)
			}
		}
		// The tokens are exactly the frame's param values, in table order.
		var frame struct {
			Params map[string]json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(msg, &frame); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", msg, err)
		}
		s := src.Lookup(toks[1])
		if len(toks) != 2+len(s.Params) {
			t.Fatalf("subject %q has %d tokens, source %s has %d params (from %q)", subject, len(toks), s.Name, len(s.Params), msg)
		}
		for i, p := range s.Params {
			raw := frame.Params[p.Name]
			var v string
			if json.Unmarshal(raw, &v) != nil {
				v = string(raw) // a number, as written
			}
			if string(toks[2+i]) != v {
				t.Fatalf("token %d of %q is %q, param %s is %q (from %q)", 2+i, subject, toks[2+i], p.Name, v, msg)
			}
		}
	})
}

// checkHistoryAck holds a subscribe ack to the history options of the
// frame that got it (see FuzzParseFrame).
func checkHistoryAck(t *testing.T, src *fanout.Sources, msg []byte, ack map[string]any) {
	t.Helper()
	var frame struct {
		Params map[string]json.RawMessage `json:"params"`
	}
	dec := json.NewDecoder(strings.NewReader(string(msg)))
	dec.UseNumber()
	if err := dec.Decode(&frame); err != nil {
		t.Fatalf("acked %q, which encoding/json refuses: %v", msg, err)
	}
	var name string
	_ = json.Unmarshal(frame.Params["source"], &name)
	s := src.Lookup([]byte(name))
	if s == nil {
		t.Fatalf("acked an unknown source: %q", msg)
	}
	data, _ := ack["data"].(map[string]any)
	rawSince, hasSince := frame.Params["since"]
	if hasSince {
		since, err := strconv.ParseUint(string(rawSince), 10, 64)
		if err != nil {
			t.Fatalf("acked since %s, not an integer from 0 to 2^64-1: %q", rawSince, msg)
		}
		if _, conflated := frame.Params["conflate_ms"]; conflated || !s.History {
			t.Fatalf("acked since with conflate_ms or without history: %q", msg)
		}
		if echo, ok := data["since"].(json.Number); !ok || echo.String() != strconv.FormatUint(since, 10) {
			t.Fatalf("ack %v echoes since %v, frame has %d: %q", ack, data["since"], since, msg)
		}
		if rec, ok := ack["recovered"].(bool); !ok || rec != (since%2 == 0) {
			t.Fatalf("ack %v: recovered wrong for since %d", ack, since)
		}
	} else if _, ok := ack["recovered"]; ok || data["since"] != nil {
		t.Fatalf("ack %v has recovered or since without since in %q", ack, msg)
	}
	if raw, ok := frame.Params["snapshot"]; ok {
		if string(raw) != "true" && string(raw) != "false" {
			t.Fatalf("acked snapshot %s: %q", raw, msg)
		}
		if string(raw) == "true" && !s.History {
			t.Fatalf("acked a snapshot without history: %q", msg)
		}
	}
	_, hasSeq := ack["seq"]
	_, hasEpoch := ack["epoch"]
	if hasSeq != s.History || hasEpoch != s.History {
		t.Fatalf("ack %v: seq/epoch present %v/%v for a source with history %v", ack, hasSeq, hasEpoch, s.History)
	}
}
