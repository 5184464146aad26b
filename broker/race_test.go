//go:build race

package broker_test

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation tests are skipped under -race (make bench runs them).
const raceEnabled = true
