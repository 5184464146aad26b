package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus series; each is counted where its
// comment says.
type metrics struct {
	// connections: live sessions by identity kind (server.go run).
	connections *prometheus.GaugeVec
	// opened: sessions accepted by identity kind (server.go run).
	opened *prometheus.CounterVec
	// closes: sessions ended by CloseReason label (server.go run); the
	// slow_consumer label is the slow-consumer close count.
	closes *prometheus.CounterVec
	// refusals: upgrades refused before accepting, by code (ServeHTTP).
	refusals *prometheus.CounterVec
	// errorReplies: error frames sent, by protocol code (session.go).
	errorReplies *prometheus.CounterVec
	// subscriptions: live (session, channel) pairs (session.go).
	subscriptions prometheus.Gauge
	// framesOut: frames written to sockets, market and direct (writer.go).
	framesOut prometheus.Counter
	// writes: socket write calls made by writers (writer.go); framesOut /
	// writes is the coalescing factor.
	writes prometheus.Counter
	// slowConsumers: send-queue overflows (session.go enqueue).
	slowConsumers prometheus.Counter
	// dropped: frames thrown away instead of written, by DropReason
	// (session.go, writer.go, server.go); dropCounters indexes it.
	dropped      *prometheus.CounterVec
	dropCounters [numDropReasons]prometheus.Counter
	// clientFrames: text frames received from clients (session.go
	// readLoop).
	clientFrames prometheus.Counter
	// batchFrames: frames a writer took from its queue at once, i.e. the
	// send-queue depth when the writer ran (writer.go).
	batchFrames prometheus.Histogram
	// fanoutLatency: NATS receive to socket write of the oldest market
	// frame of each batch (writer.go).
	fanoutLatency prometheus.Histogram
}

// drop counts n frames thrown away for reason r.
func (m *metrics) drop(r DropReason, n int) {
	if n > 0 {
		m.dropCounters[r].Add(float64(n))
	}
}

// observeBatch records a writer batch's size and the age of its oldest
// market frame.
func (m *metrics) observeBatch(batch []item) {
	if len(batch) == 0 {
		return
	}
	m.batchFrames.Observe(float64(len(batch)))
	for i := range batch {
		if r := batch[i].recv; r != 0 {
			m.fanoutLatency.Observe(float64(time.Now().UnixNano()-r) / 1e9)
			return
		}
	}
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "connections",
			Help: "Live websocket connections by identity kind.",
		}, []string{"kind"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "connections_opened_total",
			Help: "Websocket connections accepted, by identity kind.",
		}, []string{"kind"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "connections_closed_total",
			Help: "Websocket connections ended, by reason.",
		}, []string{"reason"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "upgrade_refusals_total",
			Help: "Upgrades refused before accepting, by code.",
		}, []string{"code"}),
		errorReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "error_replies_total",
			Help: "Error frames sent to clients, by code.",
		}, []string{"code"}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "floodgate", Name: "subscriptions",
			Help: "Live client subscriptions (connection, channel pairs).",
		}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "frames_written_total",
			Help: "Frames written to client sockets (market data and direct replies).",
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "socket_writes_total",
			Help: "Socket write calls made by session writers; frames_written_total / socket_writes_total is the coalescing factor.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "slow_consumer_closes_total",
			Help: "Connections closed because their send queue overflowed.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "frames_dropped_total",
			Help: "Frames thrown away instead of written to a client, by reason (queue_full, slow_consumer_close, closing, conflated).",
		}, []string{"reason"}),
		clientFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "floodgate", Name: "client_frames_total",
			Help: "Text frames received from clients.",
		}),
		batchFrames: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "floodgate", Name: "send_queue_depth_frames",
			Help:    "Frames a session writer found queued when it ran (one observation per write batch).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		fanoutLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "floodgate", Name: "fanout_latency_seconds",
			Help:    "NATS receive to socket write of the oldest market frame in each write batch.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for r := CloseReason(1); r < numReasons; r++ {
		m.closes.WithLabelValues(r.String())
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		m.dropCounters[r] = m.dropped.WithLabelValues(r.String())
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.opened, m.closes, m.refusals, m.errorReplies,
			m.subscriptions, m.framesOut, m.writes, m.slowConsumers, m.dropped, m.clientFrames, m.batchFrames, m.fanoutLatency,
			newTopKeysCollector(s, s.opts.MetricsTopKeys))
	}
	return m
}
