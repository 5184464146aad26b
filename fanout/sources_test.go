package fanout_test

import (
	"regexp"
	"strings"
	"testing"

	"floodgate/fanout"
)

func TestDefaultSourcesSubjects(t *testing.T) {
	s, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"md.prices":                   {"prices"},
		"md.book.BTC.1":               {"book", "BTC", "1"},
		"md.bbo.BTC":                  {"bbo", "BTC"},
		"md.trades.BTC":               {"trades", "BTC"},
		"md.candle.BTC.1m":            {"candle", "BTC", "1m"},
		"md.mark_price_candle.BTC.1m": {"mark_price_candle", "BTC", "1m"},
		"md.account_orders.42trU9A5":  {"account_orders", "42trU9A5"},
	}
	for want, parts := range cases {
		src := s.Lookup([]byte(parts[0]))
		if src == nil {
			t.Fatalf("no source %s", parts[0])
		}
		vals := make([][]byte, 0, len(parts)-1)
		for i, v := range parts[1:] {
			if !src.Params[i].Allowed([]byte(v)) {
				t.Fatalf("%s: %s refused", want, v)
			}
			vals = append(vals, []byte(v))
		}
		if got := string(src.AppendSubject(nil, vals)); got != want {
			t.Errorf("got %s want %s", got, want)
		}
	}
	if src := s.Lookup([]byte("account_positions")); src == nil || !src.Private || src.AccountParam != 0 {
		t.Fatalf("account source not private: %+v", src)
	}
}

func TestValidValue(t *testing.T) {
	for _, ok := range []string{"BTC", "a", "1m", "kBONK", "A_b-9", strings.Repeat("x", 64)} {
		if !fanout.ValidValue([]byte(ok)) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "*", ">", "BTC.X", "BTC X", "BTC\x00", "ü", strings.Repeat("x", 65), "a/b"} {
		if fanout.ValidValue([]byte(bad)) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSourcesConfigErrorsNameFieldAndValue(t *testing.T) {
	cases := []struct {
		cfg  fanout.SourcesConfig
		want string
	}{
		{fanout.SourcesConfig{Prefix: "md.*"}, `sources.prefix "md.*"`},
		{fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "a.b"}}}, `sources[0].name "a.b"`},
		{fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "x"}, {Name: "x"}}}, `sources[1].name "x": duplicate`},
		{fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "x", Params: []fanout.ParamSpec{{Name: "s", Kind: "float"}}}}}, `sources[0].params[0].kind "float"`},
		{fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "x", Params: []fanout.ParamSpec{{Name: "n", Kind: "int", Values: []string{"1", "x"}}}}}}, `sources[0].params[0].values "x"`},
		{fanout.SourcesConfig{Sources: []fanout.SourceSpec{{Name: "x", Account: "acct"}}}, `sources[0].account "acct"`},
	}
	for _, tc := range cases {
		_, err := fanout.NewSources(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want it to mention %s", err, tc.want)
		}
	}
}

func TestPublicAccountStreams(t *testing.T) {
	s, err := fanout.NewSources(fanout.SourcesConfig{PublicAccountStreams: true, Prefix: "pf.md"})
	if err != nil {
		t.Fatal(err)
	}
	src := s.Lookup([]byte("account_orders"))
	if src.Private {
		t.Fatal("still private")
	}
	if got := string(src.AppendSubject(nil, [][]byte{[]byte("A")})); got != "pf.md.account_orders.A" {
		t.Fatal(got)
	}
}

func FuzzParamAllowed(f *testing.F) {
	s, err := fanout.NewSources(fanout.SourcesConfig{})
	if err != nil {
		f.Fatal(err)
	}
	book := s.Lookup([]byte("book"))
	f.Add([]byte("BTC"))
	f.Add([]byte("1"))
	f.Add([]byte("a.b"))
	f.Add([]byte("10000"))
	f.Add([]byte("BTC*"))
	// An oracle independent of ValidValue: the protocol's regexp, digits
	// for int params, and the value list.
	token := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	digits := regexp.MustCompile(`^[0-9]+$`)
	aggLevels := map[string]bool{"1": true, "10": true, "100": true, "1000": true, "10000": true}
	f.Fuzz(func(t *testing.T, v []byte) {
		symbol, agg := book.Params[0], book.Params[1]
		if got, want := symbol.Allowed(v), token.Match(v); got != want {
			t.Fatalf("symbol %q: allowed %v, want %v", v, got, want)
		}
		if got, want := agg.Allowed(v), token.Match(v) && digits.Match(v) && aggLevels[string(v)]; got != want {
			t.Fatalf("agg_level %q: allowed %v, want %v", v, got, want)
		}
		if got, want := fanout.ValidValue(v), token.Match(v); got != want {
			t.Fatalf("ValidValue(%q) = %v, want %v", v, got, want)
		}
	})
}
