// Package demofeed publishes a synthetic, Pacifica-shaped market feed so that
// a fresh `floodgate serve --demo-feed` has data on every default public
// source: prices, trades, bbo, book (agg_level 1) and candle (1m).
//
// Each symbol follows a mean-reverting random walk around a plausible level
// (BTC near 90,000, ETH near 3,000, SOL near 150) and every channel is derived
// from the same state in the same step: the bbo straddles the mid, the book's
// best levels are the bbo, trades print at the bbo, the candle's OHLC and
// volume come from those trades. A payload is the JSON Pacifica puts under
// "data"; the broker wraps it as {"channel":...,"data":<payload>}.
//
// Generation is a pure function of the random state and the time passed in:
// [Feed.Step] builds one round of messages for a given now, so tests drive the
// feed with fixed times and never sleep. [Feed.Run] calls Step from a ticker
// and hands each message to Options.Publish until its context is done.
//
// # Concurrency
//
// A Feed is safe for concurrent use: Step (and so Run) serialise on an
// internal mutex. Run owns no goroutine after it returns. Options.Publish is
// called from Run's goroutine only, never under the mutex.
//
// # Hot path
//
// There is none to speak of: the default rate is 4 messages per second per
// channel (13 channels for three symbols). Step allocates its messages (about
// 10 KiB per round for three symbols, most of it the two books) and does not
// block; Run blocks only in Publish.
package demofeed
