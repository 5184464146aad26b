package fanout

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hub's Prometheus series. Each is counted in hub.go.
type metrics struct {
	// msgsIn counts NATS messages received on channel subscriptions.
	msgsIn prometheus.Counter
	// msgsOut counts frames subscribers accepted (one per subscriber per
	// message); a refused frame is counted by the subscriber's own drop
	// metric (floodgate_frames_dropped_total), not here.
	msgsOut prometheus.Counter
	// invalid counts NATS payloads that were not valid JSON and were not
	// forwarded.
	invalid prometheus.Counter
	// natsSubs is the number of live NATS subscriptions of the hub.
	natsSubs prometheus.Gauge
	// natsSlow counts nats.go slow-consumer errors: messages of a channel
	// dropped before the hub saw them (AsyncError).
	natsSlow prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, h *Hub) *metrics {
	m := &metrics{
		msgsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_messages_in_total",
			Help: "NATS messages received on channel subscriptions.",
		}),
		msgsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_messages_out_total",
			Help: "Market frames accepted by subscriber send queues (refused ones are in floodgate_frames_dropped_total).",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_invalid_payloads_total",
			Help: "NATS payloads dropped because they were not valid JSON.",
		}),
		natsSubs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "fanout_nats_subscriptions",
			Help: "Live NATS subscriptions (one per channel with local subscribers).",
		}),
		natsSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_nats_slow_consumer_total",
			Help: "NATS slow-consumer errors: channel messages dropped by the client library before delivery.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.msgsIn, m.msgsOut, m.invalid, m.natsSubs, m.natsSlow,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "floodgate", Name: "fanout_channels",
				Help: "Channels with at least one local subscriber.",
			}, func() float64 { return float64(h.Stats().Channels) }))
	}
	return m
}
