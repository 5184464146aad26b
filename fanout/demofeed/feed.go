package demofeed

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoPublish is returned by Run when Options.Publish is nil.
var ErrNoPublish = errors.New("demofeed: Options.Publish is required")

// Options configure a Feed. The zero value of every field but Publish means
// its default.
type Options struct {
	// Publish sends one message; the feed does not reuse data after the call
	// returns. Required by Run (Step does not call it). An error is counted
	// in Stats and the feed goes on.
	Publish func(subject string, data []byte) error

	// Prefix is the NATS subject prefix. Defaults to "md".
	Prefix string

	// Symbols to publish. BTC, ETH and SOL get realistic price levels, tick
	// sizes and lot sizes; any other symbol trades near 100 with a 0.01 tick.
	// Defaults to BTC, ETH, SOL.
	Symbols []string

	// Rate is the number of messages per second on each channel. Defaults to
	// 4 per second.
	Rate float64

	// Seed seeds the random walk: the same seed and the same sequence of Step
	// times give byte-identical messages. Defaults to 0, itself a fixed seed.
	Seed uint64
}

// Message is one generated NATS message.
type Message struct {
	Subject string // e.g. "md.trades.BTC"
	Data    []byte // the payload; owned by the receiver
}

// Stats count what Run handed to Publish.
type Stats struct {
	Rounds    uint64 // Step calls made by Run
	Published uint64 // Publish calls that returned nil
	Failed    uint64 // Publish calls that returned an error
}

// Feed generates and publishes the demo market feed. Build it with New.
type Feed struct {
	// Immutable after New.
	publish  func(subject string, data []byte) error
	interval time.Duration
	subjects subjects

	// Guarded by mu.
	mu      sync.Mutex
	rng     *rand.Rand
	symbols []*symbolState
	seq     uint64 // bbo update id, shared by all symbols

	// Updated by Run.
	rounds, published, failed atomic.Uint64
}

// New builds a Feed from o. It does not start anything: call Run, or Step.
func New(o Options) *Feed {
	if o.Prefix == "" {
		o.Prefix = "md"
	}
	if len(o.Symbols) == 0 {
		o.Symbols = []string{"BTC", "ETH", "SOL"}
	}
	if o.Rate <= 0 {
		o.Rate = 4
	}
	interval := time.Duration(float64(time.Second) / o.Rate)
	if interval < time.Millisecond {
		interval = time.Millisecond
	}
	f := &Feed{
		publish:  o.Publish,
		interval: interval,
		subjects: newSubjects(o.Prefix, o.Symbols),
		rng:      rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		seq:      1_000_000,
	}
	for i, name := range o.Symbols {
		f.symbols = append(f.symbols, newSymbolState(name, i, f.rng))
	}
	return f
}

// Subjects lists every subject the feed publishes on, in the order Step
// emits them.
func (f *Feed) Subjects() []string {
	return append([]string(nil), f.subjects.all...)
}

// Interval is the time between two rounds of Run: one second divided by
// Options.Rate.
func (f *Feed) Interval() time.Duration { return f.interval }

// Stats returns what Run has published so far.
func (f *Feed) Stats() Stats {
	return Stats{
		Rounds:    f.rounds.Load(),
		Published: f.published.Load(),
		Failed:    f.failed.Load(),
	}
}

// Run publishes one round immediately, then one every Interval, until ctx is
// done; it then returns nil. It returns ErrNoPublish if Options.Publish is
// nil. Publish errors are counted in Stats, not returned: a feed outlives a
// NATS reconnect.
func (f *Feed) Run(ctx context.Context) error {
	if f.publish == nil {
		return ErrNoPublish
	}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	f.round(time.Now())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			f.round(now)
		}
	}
}

func (f *Feed) round(now time.Time) {
	msgs := f.Step(now)
	f.rounds.Add(1)
	for _, m := range msgs {
		if err := f.publish(m.Subject, m.Data); err != nil {
			f.failed.Add(1)
			continue
		}
		f.published.Add(1)
	}
}

// Step advances the market by one round at now and returns one message per
// subject: md.prices, then for each symbol trades, bbo, book and candle. The
// result depends only on the seed, the previous Step times and now.
func (f *Feed) Step(now time.Time) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := now.UnixMilli()
	out := make([]Message, 0, len(f.subjects.all))
	for _, s := range f.symbols {
		s.walk(f.rng)
	}
	out = append(out, Message{Subject: f.subjects.prices, Data: pricesPayload(f.symbols, f.rng, ms)})
	for i, s := range f.symbols {
		sub := f.subjects.perSymbol[i]
		lv := s.bookLevels(f.rng)
		trades := s.trade(f.rng, lv, ms)
		s.candleAdd(trades, ms)
		f.seq++
		out = append(out,
			Message{Subject: sub.trades, Data: tradesPayload(s, trades)},
			Message{Subject: sub.bbo, Data: bboPayload(s, lv, f.seq, ms)},
			Message{Subject: sub.book, Data: bookPayload(s, lv, ms)},
			Message{Subject: sub.candle, Data: candlePayload(s)},
		)
	}
	return out
}

type symbolSubjects struct {
	trades, bbo, book, candle string
}

type subjects struct {
	prices    string
	perSymbol []symbolSubjects
	all       []string
}

func newSubjects(prefix string, symbols []string) subjects {
	s := subjects{prices: prefix + ".prices"}
	s.all = append(s.all, s.prices)
	for _, sym := range symbols {
		ss := symbolSubjects{
			trades: prefix + ".trades." + sym,
			bbo:    prefix + ".bbo." + sym,
			book:   prefix + ".book." + sym + ".1",
			candle: prefix + ".candle." + sym + ".1m",
		}
		s.perSymbol = append(s.perSymbol, ss)
		s.all = append(s.all, ss.trades, ss.bbo, ss.book, ss.candle)
	}
	return s
}
