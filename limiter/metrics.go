package limiter

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the limiter's Prometheus series. They exist (unregistered)
// when Options.Registerer is nil, so counting never branches.
type metrics struct {
	// Immutable after newMetrics
	frames     [numBudgets]prometheus.Counter // refused frames by Budget (index 0 unused)
	admits     map[error]prometheus.Counter   // refused admissions by sentinel
	ipBlocks   prometheus.Counter
	clusterUp  prometheus.Gauge
	apiRefused [numAPIs]prometheus.Counter // refused REST requests by API group
}

// admitReasons maps each admission sentinel to its metric label.
var admitReasons = map[error]string{
	ErrIPBlocked:          "ip_blocked",
	ErrCooldown:           "cooldown",
	ErrConnectRate:        "connect_rate",
	ErrTooManyConnections: "too_many_connections",
	ErrQuotaExceeded:      "quota_exceeded",
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	// floodgate_limiter_refused_frames_total counts client frames refused, by the budget that refused them.
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "floodgate_limiter_refused_frames_total",
		Help: "Client frames refused by the limiter, by budget.",
	}, []string{"budget"})
	// floodgate_limiter_refused_admissions_total counts websocket upgrades refused for limits, by reason.
	admits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "floodgate_limiter_refused_admissions_total",
		Help: "Connections refused at the upgrade for limits, by reason.",
	}, []string{"reason"})
	// floodgate_limiter_ip_blocks_total counts IPs blocked for failed key attempts.
	blocks := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "floodgate_limiter_ip_blocks_total",
		Help: "IP addresses blocked for too many failed key attempts.",
	})
	// floodgate_limiter_cluster_up is 1 while cluster budgets are in force (or in local mode), 0 during a Redis outage.
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "floodgate_limiter_cluster_up",
		Help: "1 while cluster budgets are in force, 0 while falling back to local shares.",
	})
	up.Set(1)
	// floodgate_limiter_refused_api_requests_total counts REST requests refused by a per-IP API budget.
	api := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "floodgate_limiter_refused_api_requests_total",
		Help: "REST requests refused by a per-IP API budget, by group (account_api, status_api).",
	}, []string{"api"})
	m := &metrics{admits: make(map[error]prometheus.Counter), ipBlocks: blocks, clusterUp: up}
	for a := APIAccount; a < numAPIs; a++ {
		m.apiRefused[a] = api.WithLabelValues(a.String())
	}
	for b := BudgetConn; b < numBudgets; b++ {
		m.frames[b] = frames.WithLabelValues(b.String())
	}
	for err, label := range admitReasons {
		m.admits[err] = admits.WithLabelValues(label)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{frames, admits, blocks, up, api} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) refused(b Budget) {
	if b > BudgetNone && b < numBudgets {
		m.frames[b].Inc()
	}
}

func (m *metrics) admitRefused(err error) {
	for sentinel, c := range m.admits {
		if errors.Is(err, sentinel) {
			c.Inc()
			return
		}
	}
}
