//go:build race

package console_test

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation tests are skipped under -race (make test runs them without).
const raceEnabled = true
