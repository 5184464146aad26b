package broker_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"floodgate/broker"
	"floodgate/fanout"

	"github.com/valyala/fastjson"
)

// FuzzParseFrame feeds arbitrary client frames to the parser and the
// channel resolver: it must never panic, and a frame it accepts must map to
// a subject made only of the prefix, a known source and safe tokens.
func FuzzParseFrame(f *testing.F) {
	for _, seed := range []string{
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"},"id":1}`,
		`{"method":"subscribe","params":{"source":"book","symbol":"BTC","agg_level":1}}`,
		`{"method":"unsubscribe","params":{"source":"candle","symbol":"ETH","interval":"1m"}}`,
		`{"method":"ping","id":"x"}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"BTC.>"}}`,
		`{"method":"subscribe","params":{"source":"trades","symbol":"\u002a"}}`,
		`{"method":"subscribe","params":{"source":"account_orders","account":"abc"}}`,
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
			if !json.Valid([]byte(reply)) || !utf8.ValidString(reply) {
				t.Fatalf("reply %q to %q is not valid JSON", reply, msg)
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
	})
}
