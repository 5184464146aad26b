package fanout

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hub's Prometheus series. Each is counted where its
// comment says.
type metrics struct {
	// msgsIn counts NATS messages received on channel subscriptions
	// (live.go deliver).
	msgsIn prometheus.Counter
	// msgsOut counts frames subscribers accepted (one per subscriber per
	// frame, live and conflated); a refused frame is counted by the
	// subscriber's own drop metric (floodgate_frames_dropped_total), not
	// here (live.go, conflate.go).
	msgsOut prometheus.Counter
	// conflatedOut counts the conflated frames (conflate_ms subscribers)
	// among msgsOut (conflate.go).
	conflatedOut prometheus.Counter
	// invalid counts NATS payloads that were not valid JSON and were not
	// forwarded (live.go).
	invalid prometheus.Counter
	// natsSubs is the number of live NATS subscriptions of the hub
	// (live.go).
	natsSubs prometheus.Gauge
	// natsSlow counts nats.go slow-consumer errors: messages dropped
	// before a dispatcher saw them (hub.go AsyncError).
	natsSlow prometheus.Counter
	// channelRefusals counts subscribes refused by a channel cap: [0] the
	// node's, [1] the identity's (hub.go reserve).
	channelRefusals [2]prometheus.Counter
	// framesBuilt and deflated count frames built once per node and, of
	// those, the ones also compressed; rawBytes and deflatedBytes are the
	// two forms' sizes of the compressed ones (frame.go via countFrame).
	framesBuilt, deflated   prometheus.Counter
	rawBytes, deflatedBytes prometheus.Counter
}

// countFrame counts a built frame and its compression.
func (m *metrics) countFrame(f *Frame) {
	m.framesBuilt.Inc()
	if f.deflated != nil {
		m.deflated.Inc()
		m.rawBytes.Add(float64(len(f.wire)))
		m.deflatedBytes.Add(float64(len(f.deflated)))
	}
}

func newMetrics(reg prometheus.Registerer, h *Hub) *metrics {
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "floodgate", Name: "fanout_channel_limit_refusals_total",
		Help: "Subscribes refused with CHANNEL_LIMIT, by the cap that refused: node (limits.node.max_channels) or identity (10 % of it).",
	}, []string{"limit"})
	deflate := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "floodgate", Name: "fanout_deflate_bytes_total",
		Help: "Sizes of the frames compressed for permessage-deflate subscribers, in both forms (raw, deflated): their ratio is the compression.",
	}, []string{"form"})
	m := &metrics{
		msgsIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_messages_in_total",
			Help: "NATS messages received on channel subscriptions.",
		}),
		msgsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_messages_out_total",
			Help: "Market frames accepted by subscriber send queues (refused ones are in floodgate_frames_dropped_total).",
		}),
		conflatedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_conflated_frames_out_total",
			Help: "Frames of conflate_ms subscriptions accepted by send queues (included in fanout_messages_out_total).",
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
			Help: "NATS slow-consumer errors: channel messages dropped by the client library before a dispatcher took them.",
		}),
		channelRefusals: [2]prometheus.Counter{refusals.WithLabelValues("node"), refusals.WithLabelValues("identity")},
		framesBuilt: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_frames_built_total",
			Help: "Outbound frames built (once per node per message, plus once per conflation group per tick).",
		}),
		deflated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "fanout_frames_deflated_total",
			Help: "Built frames that were also compressed (once) for permessage-deflate subscribers.",
		}),
		rawBytes:      deflate.WithLabelValues("raw"),
		deflatedBytes: deflate.WithLabelValues("deflated"),
	}
	if reg != nil {
		reg.MustRegister(m.msgsIn, m.msgsOut, m.conflatedOut, m.invalid, m.natsSubs, m.natsSlow, refusals,
			m.framesBuilt, m.deflated, deflate,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "floodgate", Name: "fanout_channels",
				Help: "Channels with at least one local subscriber.",
			}, func() float64 { return float64(h.openChannels()) }))
	}
	return m
}
