package broker_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/valyala/fastjson"
)

// FuzzParseFrame feeds arbitrary client frames to the parser and the
// channel resolver: it must never panic; every reply is valid JSON (an
// object, in valid UTF-8); and a frame it accepts maps to exactly the
// subject <prefix>.<source>.<value>... of the params the frame holds (as
// encoding/json reads them): one token per param, each the param's value
// and a safe token, so a value with a dot cannot add a token.
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
		`[1,2]`, `{"id":{}}`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	src, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		f.Fatal(err)
	}
	var p fastjson.Parser
	sess := broker.NewTestSession(newHotServer(f))
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Every reply the session sends is valid JSON in valid UTF-8.
		sess.Handle(msg)
		for _, reply := range sess.DrainTexts() {
			var obj map[string]any
			dec := json.NewDecoder(strings.NewReader(reply))
			dec.UseNumber()
			if dec.Decode(&obj) != nil || dec.More() || !utf8.ValidString(reply) {
				t.Fatalf("reply %q to %q is not a valid JSON object", reply, msg)
			}
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
