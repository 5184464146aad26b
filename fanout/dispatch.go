package fanout

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// dispatcher is one of the hub's fixed delivery goroutines. Channels
// subscribe on NATS with ChanSubscribe into the queue of the dispatcher
// their subject hashes to, so a channel costs no goroutine, and its
// messages (from every route it has had) are delivered in arrival order by
// one goroutine.
type dispatcher struct {
	// Immutable after NewHub.
	hub  *Hub
	msgs chan *nats.Msg

	// Owned by run.
	comp *compressor

	// Guarded by mu: which channel each NATS subscription feeds.
	mu     sync.RWMutex
	routes map[*nats.Subscription]*channel
}

// subscribe subscribes subject into the dispatcher's queue for ch. The
// route is registered before any message of it can be dispatched.
func (d *dispatcher) subscribe(subject string, ch *channel) (*nats.Subscription, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sub, err := d.hub.nc.ChanSubscribe(subject, d.msgs)
	if err != nil {
		return nil, err
	}
	d.routes[sub] = ch
	return sub, nil
}

// unsubscribe drops sub; its messages still queued are skipped.
func (d *dispatcher) unsubscribe(sub *nats.Subscription) {
	d.mu.Lock()
	delete(d.routes, sub)
	d.mu.Unlock()
	_ = sub.Unsubscribe()
}

// run delivers queued messages until the hub closes.
func (d *dispatcher) run() {
	defer d.hub.wg.Done()
	stop := d.hub.stop
	for {
		select {
		case <-stop:
			return
		case msg := <-d.msgs:
			d.mu.RLock()
			ch := d.routes[msg.Sub]
			d.mu.RUnlock()
			if ch != nil {
				ch.onMsg(msg, d.comp)
			}
		}
	}
}
