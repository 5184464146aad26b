package demofeed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"floodgate/fanout/demofeed"
)

var t0 = time.Date(2025, 6, 4, 15, 40, 12, 681_000_000, time.UTC)

type price struct {
	Funding, Mark, Mid, NextFunding, OpenInterest, Oracle, Symbol string
	Timestamp                                                     int64
	Volume24h, YesterdayPrice                                     string
}

type tradeMsg struct {
	H  int64  `json:"h"`
	S  string `json:"s"`
	A  string `json:"a"`
	P  string `json:"p"`
	D  string `json:"d"`
	TC string `json:"tc"`
	T  int64  `json:"t"`
	LI int64  `json:"li"`
}

type bboMsg struct {
	S  string `json:"s"`
	I  uint64 `json:"i"`
	B  string `json:"b"`
	BA string `json:"B"`
	A  string `json:"a"`
	AA string `json:"A"`
	T  int64  `json:"t"`
	LI int64  `json:"li"`
}

type levelMsg struct {
	P string `json:"p"`
	A string `json:"a"`
	N int    `json:"n"`
}

type bookMsg struct {
	L  [][]levelMsg `json:"l"`
	S  string       `json:"s"`
	T  int64        `json:"t"`
	LI int64        `json:"li"`
}

type candleMsg struct {
	T  int64  `json:"t"`
	TE int64  `json:"T"`
	S  string `json:"s"`
	I  string `json:"i"`
	O  string `json:"o"`
	C  string `json:"c"`
	H  string `json:"h"`
	L  string `json:"l"`
	V  string `json:"v"`
	N  int    `json:"n"`
}

func num(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("not a decimal string: %q", s)
	}
	return f
}

// strict decodes data into v refusing unknown fields, so that a payload
// carries exactly Pacifica's fields.
func strict(t *testing.T, data []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

func TestStep_SubjectsAndValidJSON(t *testing.T) {
	f := demofeed.New(demofeed.Options{})
	want := []string{"md.prices",
		"md.trades.BTC", "md.bbo.BTC", "md.book.BTC.1", "md.candle.BTC.1m",
		"md.trades.ETH", "md.bbo.ETH", "md.book.ETH.1", "md.candle.ETH.1m",
		"md.trades.SOL", "md.bbo.SOL", "md.book.SOL.1", "md.candle.SOL.1m"}
	if got := f.Subjects(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Subjects = %v, want %v", got, want)
	}
	for i := range 50 {
		msgs := f.Step(t0.Add(time.Duration(i) * 250 * time.Millisecond))
		if len(msgs) != len(want) {
			t.Fatalf("Step returned %d messages, want %d", len(msgs), len(want))
		}
		for j, m := range msgs {
			if m.Subject != want[j] {
				t.Fatalf("message %d subject %q, want %q", j, m.Subject, want[j])
			}
			if !json.Valid(m.Data) {
				t.Fatalf("%s: invalid JSON %s", m.Subject, m.Data)
			}
		}
	}
}

func TestStep_PrefixAndSymbols(t *testing.T) {
	f := demofeed.New(demofeed.Options{Prefix: "x", Symbols: []string{"DOGE"}})
	got := f.Subjects()
	want := "x.prices x.trades.DOGE x.bbo.DOGE x.book.DOGE.1 x.candle.DOGE.1m"
	if strings.Join(got, " ") != want {
		t.Fatalf("Subjects = %v", got)
	}
	for _, m := range f.Step(t0) {
		if !json.Valid(m.Data) {
			t.Fatalf("%s: invalid JSON %s", m.Subject, m.Data)
		}
	}
}

func TestStep_DeterministicForSeed(t *testing.T) {
	a := demofeed.New(demofeed.Options{Seed: 42})
	b := demofeed.New(demofeed.Options{Seed: 42})
	c := demofeed.New(demofeed.Options{Seed: 43})
	differs := false
	for i := range 100 {
		now := t0.Add(time.Duration(i) * 300 * time.Millisecond)
		ma, mb, mc := a.Step(now), b.Step(now), c.Step(now)
		for j := range ma {
			if !bytes.Equal(ma[j].Data, mb[j].Data) {
				t.Fatalf("step %d %s differs for the same seed:\n%s\n%s", i, ma[j].Subject, ma[j].Data, mb[j].Data)
			}
			if !bytes.Equal(ma[j].Data, mc[j].Data) {
				differs = true
			}
		}
	}
	if !differs {
		t.Fatal("seeds 42 and 43 produced identical feeds")
	}
}

// TestStep_Consistent checks the shape of every payload and that channels
// agree: bbo straddles mid, the book's best levels are the bbo, trades print
// at the bbo, the candle's OHLC and volume come from the trades.
func TestStep_Consistent(t *testing.T) {
	f := demofeed.New(demofeed.Options{Seed: 7})
	levelsOf := map[string][2]float64{"BTC": {60_000, 120_000}, "ETH": {2_000, 4_000}, "SOL": {100, 200}}
	type agg struct {
		start      int64
		o, h, l, c float64
		v          float64
		n          int
	}
	cand := map[string]*agg{}
	// 500 rounds 0.9 s apart: 7.5 minutes, so several candles roll.
	for i := range 500 {
		now := t0.Add(time.Duration(i) * 900 * time.Millisecond)
		ms := now.UnixMilli()
		msgs := f.Step(now)
		var prices []price
		strictPrices(t, msgs[0].Data, &prices)
		if len(prices) != 3 {
			t.Fatalf("prices has %d entries", len(prices))
		}
		mids := map[string]float64{}
		for _, p := range prices {
			mids[p.Symbol] = num(t, p.Mid)
			rng := levelsOf[p.Symbol]
			if m := mids[p.Symbol]; m < rng[0] || m > rng[1] {
				t.Fatalf("round %d: %s mid %v outside plausible %v", i, p.Symbol, m, rng)
			}
			if p.Timestamp != ms {
				t.Fatalf("timestamp %d, want %d", p.Timestamp, ms)
			}
			for _, s := range []string{p.Funding, p.Mark, p.NextFunding, p.OpenInterest, p.Oracle, p.Volume24h, p.YesterdayPrice} {
				num(t, s)
			}
			if d := num(t, p.Mark)/mids[p.Symbol] - 1; d > 0.001 || d < -0.001 {
				t.Fatalf("mark %s far from mid %s", p.Mark, p.Mid)
			}
		}
		for k, sym := range []string{"BTC", "ETH", "SOL"} {
			base := 1 + 4*k
			var trades []tradeMsg
			var bbo bboMsg
			var book bookMsg
			var c candleMsg
			strict(t, msgs[base].Data, &trades)
			strict(t, msgs[base+1].Data, &bbo)
			strict(t, msgs[base+2].Data, &book)
			strict(t, msgs[base+3].Data, &c)

			bid, ask := num(t, bbo.B), num(t, bbo.A)
			if bbo.S != sym || bbo.T != ms || !(bid < mids[sym] && mids[sym] < ask) {
				t.Fatalf("round %d: bbo %+v does not straddle mid %v", i, bbo, mids[sym])
			}
			if num(t, bbo.BA) <= 0 || num(t, bbo.AA) <= 0 {
				t.Fatalf("bbo sizes %+v", bbo)
			}
			if len(book.L) != 2 || len(book.L[0]) != 10 || len(book.L[1]) != 10 {
				t.Fatalf("book shape %d levels", len(book.L))
			}
			if book.L[0][0].P != bbo.B || book.L[1][0].P != bbo.A || book.L[0][0].A != bbo.BA || book.L[1][0].A != bbo.AA {
				t.Fatalf("book top %+v %+v differs from bbo %+v", book.L[0][0], book.L[1][0], bbo)
			}
			for j := 1; j < 10; j++ {
				if num(t, book.L[0][j].P) >= num(t, book.L[0][j-1].P) || num(t, book.L[1][j].P) <= num(t, book.L[1][j-1].P) {
					t.Fatalf("book not sorted: %+v", book.L)
				}
				if book.L[0][j].N < 1 || num(t, book.L[0][j].A) <= 0 {
					t.Fatalf("bad level %+v", book.L[0][j])
				}
			}
			if book.S != sym || book.T != ms || book.LI != bbo.LI {
				t.Fatalf("book header %+v", book)
			}

			if len(trades) < 1 || len(trades) > 3 {
				t.Fatalf("%d trades", len(trades))
			}
			a := cand[sym]
			start := ms - ms%60_000
			if a == nil || a.start != start {
				a = &agg{start: start}
				cand[sym] = a
			}
			for _, tr := range trades {
				p := num(t, tr.P)
				switch tr.D {
				case "open_long", "close_short":
					if tr.P != bbo.A {
						t.Fatalf("buy %+v not at ask %s", tr, bbo.A)
					}
				case "open_short", "close_long":
					if tr.P != bbo.B {
						t.Fatalf("sell %+v not at bid %s", tr, bbo.B)
					}
				default:
					t.Fatalf("bad side %q", tr.D)
				}
				if tr.S != sym || tr.T != ms || num(t, tr.A) <= 0 || (tr.TC != "normal" && tr.TC != "market_liquidation") {
					t.Fatalf("bad trade %+v", tr)
				}
				if a.n == 0 {
					a.o, a.h, a.l = p, p, p
				}
				a.h, a.l, a.c = max(a.h, p), min(a.l, p), p
				a.v += num(t, tr.A)
				a.n++
			}
			if c.T != start || c.TE != start+60_000 || c.S != sym || c.I != "1m" || c.N != a.n {
				t.Fatalf("round %d candle %+v, want start %d n %d", i, c, start, a.n)
			}
			if num(t, c.O) != a.o || num(t, c.H) != a.h || num(t, c.L) != a.l || num(t, c.C) != a.c {
				t.Fatalf("candle %+v, want OHLC %v %v %v %v", c, a.o, a.h, a.l, a.c)
			}
			if d := num(t, c.V) - a.v; d > 1e-6 || d < -1e-6 {
				t.Fatalf("candle volume %s, want %v", c.V, a.v)
			}
		}
	}
}

func strictPrices(t *testing.T, data []byte, v *[]price) {
	t.Helper()
	var raw []map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("prices: %v", err)
	}
	keys := "funding mark mid next_funding open_interest oracle symbol timestamp volume_24h yesterday_price"
	for _, m := range raw {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		if len(ks) != 10 {
			t.Fatalf("prices entry has keys %v, want %s", ks, keys)
		}
		for _, k := range strings.Fields(keys) {
			if _, ok := m[k]; !ok {
				t.Fatalf("prices entry lacks %q: %v", k, m)
			}
		}
		*v = append(*v, price{
			Funding: m["funding"].(string), Mark: m["mark"].(string), Mid: m["mid"].(string),
			NextFunding: m["next_funding"].(string), OpenInterest: m["open_interest"].(string),
			Oracle: m["oracle"].(string), Symbol: m["symbol"].(string), Timestamp: int64(m["timestamp"].(float64)),
			Volume24h: m["volume_24h"].(string), YesterdayPrice: m["yesterday_price"].(string),
		})
	}
}

func TestFixed(t *testing.T) {
	for _, c := range []struct {
		v    int64
		dec  int
		want string
	}{
		{524, 5, "0.00524"}, {15730, 2, "157.3"}, {15732, 2, "157.32"}, {105473, 0, "105473"},
		{1, 5, "0.00001"}, {100, 2, "1"}, {0, 3, "0"}, {-5, 1, "-0.5"}, {2105455, 1, "210545.5"},
	} {
		if got := demofeed.Fixed(c.v, c.dec); got != c.want {
			t.Errorf("fixed(%d, %d) = %q, want %q", c.v, c.dec, got, c.want)
		}
	}
}

func TestRun_NoPublish(t *testing.T) {
	if err := demofeed.New(demofeed.Options{}).Run(context.Background()); !errors.Is(err, demofeed.ErrNoPublish) {
		t.Fatalf("Run = %v, want ErrNoPublish", err)
	}
}

func TestRun_PublishesUntilCancelled(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	fail := true
	ctx, cancel := context.WithCancel(context.Background())
	f := demofeed.New(demofeed.Options{Rate: 200, Publish: func(subject string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		seen[subject]++
		if fail {
			fail = false
			return errors.New("boom")
		}
		if seen[subject] >= 3 {
			cancel()
		}
		return nil
	}})
	if f.Interval() != 5*time.Millisecond {
		t.Fatalf("Interval = %v", f.Interval())
	}
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("Run did not stop")
	}
	st := f.Stats()
	if st.Failed != 1 || st.Published == 0 || st.Rounds < 2 {
		t.Fatalf("Stats = %+v", st)
	}
}

func BenchmarkStep_ThreeSymbols(b *testing.B) {
	f := demofeed.New(demofeed.Options{})
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(250 * time.Millisecond)
		f.Step(now)
	}
}
