package node

import (
	"sync"
	"time"

	"floodgate/auth"
	"floodgate/broker"
)

// meter folds the broker's per-session delivery counts into the keys'
// usage (auth.Usage) when the usage flusher runs: it is the Usage's
// Collect, called once per flush (1 s) with the flush's time. The
// per-frame cost stays in the broker's writer (two atomic adds per
// written batch); nothing here runs per message.
type meter struct {
	// Immutable after New (broker is set by buildBroker before Run).
	usage  *auth.Usage
	broker func() *broker.Server

	// mu serialises collects (Run's flush and a test's flush).
	mu sync.Mutex
}

// collect implements auth.UsageOptions.Collect.
func (m *meter) collect(now time.Time) {
	srv := m.broker()
	if srv == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	srv.TakeDelivered(func(prefix string, d broker.Delivered) {
		m.usage.AddDelivered(prefix, d.Msgs, d.Bytes)
	})
}
