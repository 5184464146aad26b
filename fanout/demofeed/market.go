package demofeed

import (
	"math"
	"math/rand/v2"
)

// bookDepth is the number of levels per side in a book message.
const bookDepth = 10

// Random-walk parameters, per Step: sigma is the relative standard deviation
// of one move, kappa the pull back towards the anchor price.
const (
	sigma = 1.5e-4
	kappa = 2e-3
)

// profile is the static shape of a symbol's market.
type profile struct {
	price    float64 // anchor price in quote units
	priceDec int     // decimals of the tick size (BTC 0: tick 1)
	lotDec   int     // decimals of the lot size (BTC 5: lot 0.00001)
	size     float64 // typical trade size in base units
	oi       float64 // typical open interest in base units
	vol      float64 // typical 24 h volume in base units
}

func profileFor(name string, index int) profile {
	switch name {
	case "BTC":
		return profile{price: 90_000, priceDec: 0, lotDec: 5, size: 0.05, oi: 1_250, vol: 63_000}
	case "ETH":
		return profile{price: 3_000, priceDec: 1, lotDec: 4, size: 0.8, oi: 21_000, vol: 480_000}
	case "SOL":
		return profile{price: 150, priceDec: 2, lotDec: 2, size: 12, oi: 310_000, vol: 2_600_000}
	}
	return profile{price: 100 + 10*float64(index), priceDec: 2, lotDec: 2, size: 5, oi: 50_000, vol: 400_000}
}

// level is one price level of the book, in ticks and lots.
type level struct {
	p int64 // price in ticks
	a int64 // amount in lots
	n int   // number of orders
}

// levels is one round's book: bids descending, asks ascending; bids[0] and
// asks[0] are the bbo.
type levels struct {
	bids, asks [bookDepth]level
}

// trade is one generated fill.
type trade struct {
	h  int64  // trade id
	p  int64  // price in ticks
	a  int64  // amount in lots
	d  string // open_long, open_short, close_long, close_short
	tc string // normal, market_liquidation
	t  int64  // unix ms
	li int64  // last order id
}

// candle is the current 1m candle, in ticks and lots.
type candle struct {
	start      int64 // unix ms of the minute
	o, h, l, c int64
	v          int64
	n          int
}

// symbolState is one symbol's market; owned by the Feed under its mutex.
type symbolState struct {
	name string
	prof profile

	anchor    float64 // ticks
	mid       float64 // ticks
	bid, ask  int64   // ticks, after the last walk
	funding   float64
	nextFund  float64
	oi        int64 // lots
	oiTarget  int64 // lots: open interest reverts towards it
	vol24     int64 // lots
	volTarget int64 // lots: 24 h volume reverts towards it
	yesterday int64 // ticks
	tradeID   int64
	orderID   int64
	candle    candle
}

func newSymbolState(name string, index int, rng *rand.Rand) *symbolState {
	pr := profileFor(name, index)
	tick := math.Pow10(-pr.priceDec)
	lot := math.Pow10(-pr.lotDec)
	anchor := pr.price / tick
	s := &symbolState{
		name:      name,
		prof:      pr,
		anchor:    anchor,
		mid:       anchor * (1 + 0.002*rng.NormFloat64()),
		funding:   0.0000125,
		nextFund:  0.0000125,
		oiTarget:  int64(pr.oi / lot),
		volTarget: int64(pr.vol / lot),
		yesterday: int64(anchor * (1 + 0.01*rng.NormFloat64())),
		tradeID:   80_000_000 + int64(rng.IntN(1_000_000)),
		orderID:   1_500_000 + int64(rng.IntN(100_000)),
	}
	s.oi = int64(float64(s.oiTarget) * (0.9 + 0.2*rng.Float64()))
	s.vol24 = int64(float64(s.volTarget) * (0.9 + 0.2*rng.Float64()))
	s.setBBO(rng)
	return s
}

// walk moves the mid one step and recomputes the bbo and funding.
func (s *symbolState) walk(rng *rand.Rand) {
	s.mid *= math.Exp(sigma*rng.NormFloat64() - kappa*math.Log(s.mid/s.anchor))
	s.setBBO(rng)
	s.funding = clamp(s.funding+2e-7*rng.NormFloat64(), -1e-4, 1e-4)
	s.nextFund = clamp(s.funding+1e-7*rng.NormFloat64(), -1e-4, 1e-4)
}

func (s *symbolState) setBBO(rng *rand.Rand) {
	spread := int64(1)
	if rng.IntN(5) == 0 {
		spread = 2
	}
	s.bid = max(1, int64(math.Floor(s.mid-float64(spread)/2)))
	s.ask = s.bid + spread
}

// midHalfTicks is bid+ask: the mid in units of half a tick.
func (s *symbolState) midHalfTicks() int64 { return s.bid + s.ask }

// lots draws an amount around scale typical trade sizes, at least one lot.
func (s *symbolState) lots(rng *rand.Rand, scale float64) int64 {
	lot := math.Pow10(-s.prof.lotDec)
	return max(1, int64(s.prof.size*scale*rng.ExpFloat64()/lot))
}

// bookLevels draws the book around the current bbo.
func (s *symbolState) bookLevels(rng *rand.Rand) levels {
	var lv levels
	bp, ap := s.bid, s.ask
	for i := range bookDepth {
		if i > 0 {
			bp -= 1 + int64(rng.IntN(3))
			ap += 1 + int64(rng.IntN(3))
		}
		lv.bids[i] = level{p: max(1, bp), a: s.lots(rng, 2+float64(i)), n: 1 + rng.IntN(6)}
		lv.asks[i] = level{p: ap, a: s.lots(rng, 2+float64(i)), n: 1 + rng.IntN(6)}
	}
	return lv
}

// trade draws one to three fills at the bbo and updates open interest (a
// fill opens more often when open interest is below its target) and the 24 h
// volume (each fill adds its amount and decays the total towards its target).
func (s *symbolState) trade(rng *rand.Rand, lv levels, ms int64) []trade {
	n := 1 + rng.IntN(3)
	out := make([]trade, 0, n)
	for range n {
		buy := rng.IntN(2) == 0
		opening := rng.Float64() < 0.5*float64(s.oiTarget)/float64(max(1, s.oi))
		t := trade{p: lv.bids[0].p, a: s.lots(rng, 1), tc: "normal", t: ms}
		switch {
		case buy && opening:
			t.p, t.d = lv.asks[0].p, "open_long"
		case buy:
			t.p, t.d = lv.asks[0].p, "close_short"
		case opening:
			t.d = "open_short"
		default:
			t.d = "close_long"
		}
		if rng.IntN(200) == 0 {
			t.tc = "market_liquidation"
		}
		s.tradeID++
		s.orderID += 1 + int64(rng.IntN(5))
		t.h, t.li = s.tradeID, s.orderID
		if opening {
			s.oi += t.a
		} else {
			s.oi = max(0, s.oi-t.a)
		}
		s.vol24 += t.a - t.a*s.vol24/max(1, s.volTarget)
		out = append(out, t)
	}
	return out
}

// candleAdd rolls the 1m candle at a minute boundary and folds trades in:
// a new minute opens flat at the last close; its first trade sets OHLC.
func (s *symbolState) candleAdd(trades []trade, ms int64) {
	minute := ms - ms%60_000
	c := &s.candle
	if c.start != minute {
		last := c.c
		if c.start == 0 {
			last = (s.midHalfTicks() + 1) / 2
		}
		*c = candle{start: minute, o: last, h: last, l: last, c: last}
	}
	for _, t := range trades {
		if c.n == 0 {
			c.o, c.h, c.l = t.p, t.p, t.p
		}
		c.h, c.l, c.c = max(c.h, t.p), min(c.l, t.p), t.p
		c.v += t.a
		c.n++
	}
}

func clamp(v, lo, hi float64) float64 { return max(lo, min(hi, v)) }
