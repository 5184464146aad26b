package demofeed

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
)

// The payload types mirror what Pacifica sends under "data"; field order is
// Pacifica's. Numbers that carry prices or amounts are decimal strings.

type priceJSON struct {
	Funding        string `json:"funding"`
	Mark           string `json:"mark"`
	Mid            string `json:"mid"`
	NextFunding    string `json:"next_funding"`
	OpenInterest   string `json:"open_interest"`
	Oracle         string `json:"oracle"`
	Symbol         string `json:"symbol"`
	Timestamp      int64  `json:"timestamp"`
	Volume24h      string `json:"volume_24h"`
	YesterdayPrice string `json:"yesterday_price"`
}

type tradeJSON struct {
	H  int64  `json:"h"`
	S  string `json:"s"`
	A  string `json:"a"`
	P  string `json:"p"`
	D  string `json:"d"`
	TC string `json:"tc"`
	T  int64  `json:"t"`
	LI int64  `json:"li"`
}

type bboJSON struct {
	S  string `json:"s"`
	I  uint64 `json:"i"`
	B  string `json:"b"`
	BA string `json:"B"`
	A  string `json:"a"`
	AA string `json:"A"`
	T  int64  `json:"t"`
	LI int64  `json:"li"`
}

type levelJSON struct {
	P string `json:"p"`
	A string `json:"a"`
	N int    `json:"n"`
}

type bookJSON struct {
	L  [2][bookDepth]levelJSON `json:"l"`
	S  string                  `json:"s"`
	T  int64                   `json:"t"`
	LI int64                   `json:"li"`
}

type candleJSON struct {
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

func pricesPayload(syms []*symbolState, rng *rand.Rand, ms int64) []byte {
	out := make([]priceJSON, 0, len(syms))
	for _, s := range syms {
		dec := s.prof.priceDec
		mark := (s.midHalfTicks()+1)/2 + int64(rng.IntN(3)) - 1
		oracle := mark + int64(rng.IntN(3)) - 1
		out = append(out, priceJSON{
			Funding:        strconv.FormatFloat(s.funding, 'f', 7, 64),
			Mark:           fixed(mark, dec),
			Mid:            fixed(s.midHalfTicks()*5, dec+1),
			NextFunding:    strconv.FormatFloat(s.nextFund, 'f', 7, 64),
			OpenInterest:   fixed(s.oi, s.prof.lotDec),
			Oracle:         fixed(oracle, dec),
			Symbol:         s.name,
			Timestamp:      ms,
			Volume24h:      fixed(s.vol24, s.prof.lotDec),
			YesterdayPrice: fixed(s.yesterday, dec),
		})
	}
	return mustJSON(out)
}

func tradesPayload(s *symbolState, trades []trade) []byte {
	out := make([]tradeJSON, 0, len(trades))
	for _, t := range trades {
		out = append(out, tradeJSON{
			H: t.h, S: s.name, A: fixed(t.a, s.prof.lotDec), P: fixed(t.p, s.prof.priceDec),
			D: t.d, TC: t.tc, T: t.t, LI: t.li,
		})
	}
	return mustJSON(out)
}

func bboPayload(s *symbolState, lv levels, id uint64, ms int64) []byte {
	return mustJSON(bboJSON{
		S: s.name, I: id,
		B: fixed(lv.bids[0].p, s.prof.priceDec), BA: fixed(lv.bids[0].a, s.prof.lotDec),
		A: fixed(lv.asks[0].p, s.prof.priceDec), AA: fixed(lv.asks[0].a, s.prof.lotDec),
		T: ms, LI: s.orderID,
	})
}

func bookPayload(s *symbolState, lv levels, ms int64) []byte {
	b := bookJSON{S: s.name, T: ms, LI: s.orderID}
	for i := range bookDepth {
		b.L[0][i] = levelJSON{P: fixed(lv.bids[i].p, s.prof.priceDec), A: fixed(lv.bids[i].a, s.prof.lotDec), N: lv.bids[i].n}
		b.L[1][i] = levelJSON{P: fixed(lv.asks[i].p, s.prof.priceDec), A: fixed(lv.asks[i].a, s.prof.lotDec), N: lv.asks[i].n}
	}
	return mustJSON(b)
}

func candlePayload(s *symbolState) []byte {
	c := s.candle
	d := s.prof.priceDec
	return mustJSON(candleJSON{
		T: c.start, TE: c.start + 60_000, S: s.name, I: "1m",
		O: fixed(c.o, d), C: fixed(c.c, d), H: fixed(c.h, d), L: fixed(c.l, d),
		V: fixed(c.v, s.prof.lotDec), N: c.n,
	})
}

// fixed formats v·10^-dec as a decimal string without trailing zeros:
// fixed(524, 5) = "0.00524", fixed(15730, 2) = "157.3", fixed(9, 0) = "9".
func fixed(v int64, dec int) string {
	var buf [32]byte
	b := buf[:0]
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	digits := strconv.AppendInt(nil, v, 10)
	for len(digits) <= dec {
		digits = append([]byte{'0'}, digits...)
	}
	intPart, frac := digits[:len(digits)-dec], digits[len(digits)-dec:]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	b = append(b, intPart...)
	if len(frac) > 0 {
		b = append(b, '.')
		b = append(b, frac...)
	}
	return string(b)
}

// mustJSON marshals the feed's own payload types, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("demofeed: " + err.Error())
	}
	return b
}
