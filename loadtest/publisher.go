package loadtest

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// MinPayloadSize is the smallest payload AppendPayload produces: the fixed
// fields with a 19-digit ts and a 10-digit seq.
const MinPayloadSize = len(`{"ts":1234567890123456789,"seq":1234567890,"pad":""}`)

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// Conn is the NATS connection to publish on. Required.
	Conn *nats.Conn

	// Subjects receive the messages in turn (message k goes to subject
	// k mod len(Subjects)). Required.
	Subjects []string

	// Rate is the total number of messages per second over all subjects.
	// Defaults to 1000 per second.
	Rate float64

	// Size is the payload size in bytes, at least MinPayloadSize. Defaults to
	// 200 bytes. Ignored for PayloadBook.
	Size int

	// Payload is PayloadPad (Size bytes) or PayloadBook (a 20-level book
	// with varying numbers, about 1.6 KB, compressible like real market
	// data, not like padding). Defaults to PayloadPad.
	Payload string
}

// Publisher publishes JSON payloads carrying "ts" (unix ns at publish time)
// and "seq" (per subject, from 1) at a steady rate, and counts them per
// subject. Build it with NewPublisher; Run once.
type Publisher struct {
	// Immutable after NewPublisher.
	nc       *nats.Conn
	subjects []string
	rate     float64
	size     int
	book     bool

	// Owned by Run; read after Run returns.
	buf      []byte
	seq      []uint64 // last seq per subject
	measured []uint64 // messages with ts >= measureFrom, per subject

	// Updated by Run, read by anyone.
	total atomic.Uint64
}

// NewPublisher checks o and builds a Publisher.
func NewPublisher(o PublisherOptions) (*Publisher, error) {
	if o.Conn == nil || len(o.Subjects) == 0 {
		return nil, fmt.Errorf("%w: publisher needs a NATS connection and subjects", ErrConfig)
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Size <= 0 {
		o.Size = 200
	}
	if o.Size < MinPayloadSize {
		return nil, fmt.Errorf("%w: size %d below the minimum %d", ErrConfig, o.Size, MinPayloadSize)
	}
	return &Publisher{
		nc:       o.Conn,
		subjects: o.Subjects,
		rate:     o.Rate,
		size:     o.Size,
		book:     o.Payload == PayloadBook,
		buf:      make([]byte, 0, max(o.Size, 2048)),
		seq:      make([]uint64, len(o.Subjects)),
		measured: make([]uint64, len(o.Subjects)),
	}, nil
}

// Run publishes at the configured rate from now until until (or ctx is
// done), counting per subject the messages whose ts is at or after
// measureFrom, then flushes the NATS connection so every counted message
// has reached the server. It returns the first publish or flush error, or
// ctx.Err(). It sleeps between bursts; a burst is whatever fell due since
// the last one (about one millisecond's worth).
func (p *Publisher) Run(ctx context.Context, measureFrom, until time.Time) error {
	start := time.Now()
	from := measureFrom.UnixNano()
	var sent int64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(until) {
			break
		}
		due := int64(p.rate * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			i := int(sent % int64(len(p.subjects)))
			p.seq[i]++
			ts := time.Now().UnixNano()
			if p.book {
				p.buf = AppendBookPayload(p.buf[:0], ts, p.seq[i])
			} else {
				p.buf = AppendPayload(p.buf[:0], ts, p.seq[i], p.size)
			}
			if err := p.nc.Publish(p.subjects[i], p.buf); err != nil {
				return fmt.Errorf("loadtest: publish: %w", err)
			}
			if ts >= from {
				p.measured[i]++
			}
			p.total.Add(1)
		}
		next := start.Add(time.Duration(float64(sent+1) / p.rate * float64(time.Second)))
		wait := max(time.Until(next), 0)
		if r := time.Until(until); r < wait {
			wait = r
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			_ = p.nc.Flush()
			return ctx.Err()
		case <-timer.C:
		}
	}
	if err := p.nc.Flush(); err != nil {
		return fmt.Errorf("loadtest: flush: %w", err)
	}
	return nil
}

// Measured returns, per subject in PublisherOptions order, how many messages
// Run published with ts at or after measureFrom. Call it after Run returns.
func (p *Publisher) Measured() []uint64 { return append([]uint64(nil), p.measured...) }

// Total is the number of messages published so far, measured or not. Safe
// for concurrent use.
func (p *Publisher) Total() uint64 { return p.total.Load() }

// AppendPayload appends a JSON object of exactly size bytes (or the minimum
// needed, if larger) to dst: {"ts":<ts>,"seq":<seq>,"pad":"xxx..."}.
// 0 allocations when dst has the capacity.
func AppendPayload(dst []byte, ts int64, seq uint64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"pad":"`...)
	for pad := size - (len(dst) - start) - 2; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// AppendBookPayload appends a book of 20 levels a side, about 1.6 KB, with
// "ts" and "seq" first: {"ts":..,"seq":..,"s":"BTC","l":[[{"p","a","n"}...],
// [...]],"t":..}. Prices and amounts vary with seq like a live book (so it
// compresses like market data, 2-5x, not like padding). 0 allocations when
// dst has the capacity.
func AppendBookPayload(dst []byte, ts int64, seq uint64) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"s":"BTC","l":[`...)
	x := seq*0x9E3779B97F4A7C15 + 1
	next := func() uint64 { // xorshift64
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	mid := 90000 + int64(seq%500)
	for side := int64(0); side < 2; side++ {
		if side > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		for i := int64(0); i < 20; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			price := mid + (1-2*side)*(i+1)
			dst = append(dst, `{"p":"`...)
			dst = strconv.AppendInt(dst, price, 10)
			dst = append(dst, '.')
			dst = strconv.AppendUint(dst, next()%10, 10)
			dst = append(dst, `","a":"`...)
			dst = strconv.AppendUint(dst, next()%50, 10)
			dst = append(dst, '.')
			f := next() % 100000
			for d := uint64(10000); d > f && d > 1; d /= 10 {
				dst = append(dst, '0')
			}
			dst = strconv.AppendUint(dst, f, 10)
			dst = append(dst, `","n":`...)
			dst = strconv.AppendUint(dst, next()%20+1, 10)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `],"t":`...)
	dst = strconv.AppendInt(dst, ts/1e6, 10)
	return append(dst, '}')
}
