package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// ControlSubject is the NATS subject of key control events.
const ControlSubject = "floodgate.ctl.keys"

// EventType says what happened to a key.
type EventType string

// Control event types. The broker closes the key's connections on the
// first three (1008 with Reason) and refreshes their limits on updated.
const (
	EventRevoked     EventType = "revoked"
	EventDeactivated EventType = "deactivated"
	EventExpired     EventType = "expired"
	EventUpdated     EventType = "updated"
)

// Close reasons carried by the events (the websocket close text).
const (
	ReasonRevoked     = "api key revoked"
	ReasonDeactivated = "api key deactivated"
	ReasonExpired     = "api key expired"
	ReasonDeleted     = "api key deleted"
)

// KeyEvent is one control event, JSON-encoded on ControlSubject.
type KeyEvent struct {
	Type   EventType `json:"type"`
	Prefix string    `json:"prefix"`
	Reason string    `json:"reason,omitempty"`
}

// Closes reports whether the event ends the key's live connections.
func (e KeyEvent) Closes() bool {
	return e.Type == EventRevoked || e.Type == EventDeactivated || e.Type == EventExpired
}

// Notifier publishes control events to every node.
type Notifier interface {
	// Notify publishes ev; it returns once the event has left this
	// process (for NATS: flushed to the server).
	Notify(ctx context.Context, ev KeyEvent) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, ev KeyEvent) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, ev KeyEvent) error { return f(ctx, ev) }

// NATSNotifier publishes control events on ControlSubject.
type NATSNotifier struct {
	// Immutable after NewNATSNotifier
	nc *nats.Conn
}

// NewNATSNotifier returns a Notifier over nc; the caller owns nc.
func NewNATSNotifier(nc *nats.Conn) *NATSNotifier { return &NATSNotifier{nc: nc} }

// Notify publishes ev and waits for the server's flush acknowledgement
// (one round trip, at most 2 s when ctx has no deadline), so the event is on its way to every node when it
// returns.
func (n *NATSNotifier) Notify(ctx context.Context, ev KeyEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := n.nc.Publish(ControlSubject, b); err != nil {
		return fmt.Errorf("auth: publish key event: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("auth: publish key event: %w", err)
	}
	return nil
}

// DecodeKeyEvent decodes a control event; ok is false for anything but a
// JSON object with a known type and a well-formed key prefix (such
// messages are dropped).
func DecodeKeyEvent(b []byte) (ev KeyEvent, ok bool) {
	if json.Unmarshal(b, &ev) != nil || !ValidPrefix(ev.Prefix) {
		return KeyEvent{}, false
	}
	switch ev.Type {
	case EventRevoked, EventDeactivated, EventExpired, EventUpdated:
		return ev, true
	}
	return KeyEvent{}, false
}

// SubscribeEvents calls fn for every control event received on nc, one at
// a time on the subscription's goroutine; malformed messages are dropped.
// stop unsubscribes and returns once fn is no longer running.
func SubscribeEvents(nc *nats.Conn, fn func(KeyEvent)) (stop func(), err error) {
	var (
		mu      sync.Mutex
		stopped bool // guarded by mu
	)
	sub, err := nc.Subscribe(ControlSubject, func(m *nats.Msg) {
		ev, ok := DecodeKeyEvent(m.Data)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			fn(ev)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("auth: subscribe key events: %w", err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("auth: subscribe key events: %w", err)
	}
	return func() {
		_ = sub.Unsubscribe()
		mu.Lock()
		stopped = true
		mu.Unlock()
	}, nil
}

// marshalEvents encodes the events of a batch as the stores keep them.
func marshalEvents(batch []PrefixEvent) ([][]byte, error) {
	vals := make([][]byte, len(batch))
	for i := range batch {
		v, err := json.Marshal(batch[i].Event)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	return vals, nil
}
