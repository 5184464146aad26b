package limiter

import (
	"math"
	"time"
)

// TierKind selects the Tier of an identity.
type TierKind uint8

const (
	// TierAnonymous is a connection without a key, limited per IP.
	TierAnonymous TierKind = iota
	// TierKey is a connection with a valid key.
	TierKey
)

// Limits are a key's own overrides of its tier (docs/rest.md `limits`). A zero
// field keeps the tier value.
type Limits struct {
	CreditsPerMinute      int64   `json:"credits_per_minute,omitempty" yaml:"credits_per_minute,omitempty"`
	MaxConnections        int64   `json:"max_connections,omitempty" yaml:"max_connections,omitempty"`
	MaxSubscriptions      int     `json:"max_subscriptions,omitempty" yaml:"max_subscriptions,omitempty"`
	ConnMessagesPerSecond float64 `json:"conn_messages_per_second,omitempty" yaml:"conn_messages_per_second,omitempty"`
}

// Quotas are a key's quotas (docs/rest.md `quotas`); 0 means none.
// Total, Daily, Weekly and Monthly are in credits: Total over the key's
// lifetime; Daily, Weekly and Monthly rolling windows of 24 h, 7 d and
// 30 d, or, with Calendar, the UTC calendar periods (day from 00:00, week
// from Monday 00:00, month from the 1st 00:00; CalendarPeriod). Calendar
// without a daily, weekly or monthly quota changes nothing.
type Quotas struct {
	Total    int64 `json:"total,omitempty" yaml:"total,omitempty"`
	Daily    int64 `json:"daily,omitempty" yaml:"daily,omitempty"`
	Weekly   int64 `json:"weekly,omitempty" yaml:"weekly,omitempty"`
	Monthly  int64 `json:"monthly,omitempty" yaml:"monthly,omitempty"`
	Calendar bool  `json:"calendar,omitempty" yaml:"calendar,omitempty"`
	// DeliveredDaily is not a credit quota: messages delivered per UTC day
	// (00:00 UTC refill), enforced by the node's delivery metering
	// (docs/rest.md), not by the limiter.
	DeliveredDaily int64 `json:"delivered_daily,omitempty" yaml:"delivered_daily,omitempty"`
}

// credit is q without DeliveredDaily: the quotas the limiter enforces.
func (q Quotas) credit() Quotas {
	q.DeliveredDaily = 0
	return q
}

func (q Quotas) any() bool { return q.Total > 0 || q.Daily > 0 || q.Weekly > 0 || q.Monthly > 0 }

// Limit is the quota of window w; 0 means none.
func (q Quotas) Limit(w QuotaWindow) int64 { return q.limit(w) }

func (q Quotas) limit(w QuotaWindow) int64 {
	switch w {
	case QuotaTotal:
		return q.Total
	case QuotaDaily:
		return q.Daily
	case QuotaWeekly:
		return q.Weekly
	case QuotaMonthly:
		return q.Monthly
	}
	return 0
}

// QuotaWindow names one of a key's quotas.
type QuotaWindow uint8

const (
	QuotaNone QuotaWindow = iota
	QuotaDaily
	QuotaWeekly
	QuotaMonthly
	QuotaTotal
	numQuotaWindows = int(QuotaTotal) // Daily..Total
)

// quotaCheckOrder checks the quota that clears last first, so a refusal
// names the window the client really waits for.
var quotaCheckOrder = [...]QuotaWindow{QuotaTotal, QuotaMonthly, QuotaWeekly, QuotaDaily}

// String is the name used in messages and metric labels: "daily", ...
func (w QuotaWindow) String() string {
	switch w {
	case QuotaDaily:
		return "daily"
	case QuotaWeekly:
		return "weekly"
	case QuotaMonthly:
		return "monthly"
	case QuotaTotal:
		return "total"
	}
	return "none"
}

// Duration is the rolling window length; 0 for QuotaTotal and QuotaNone.
// A calendar window's period is CalendarPeriod.
func (w QuotaWindow) Duration() time.Duration {
	switch w {
	case QuotaDaily:
		return 24 * time.Hour
	case QuotaWeekly:
		return 7 * 24 * time.Hour
	case QuotaMonthly:
		return 30 * 24 * time.Hour
	}
	return 0
}

// policy is the immutable, resolved set of numbers of one identity. Tier
// policies are shared by every identity of the tier; an override builds a
// new one. Times are nanoseconds.
type policy struct {
	credits, creditWindow int64
	connQ                 int64 // per-connection burst
	creditG, connG        gcra  // credits; per-connection messages
	connectG              gcra  // new connections
	maxConns              int64
	connects, connectWin  int64
	maxSubs               int
	quotas                Quotas
	hasQuotas             bool
	connRate              float64
	limits                Limits // the overrides it was built from
	tier                  TierKind
}

// makePolicy resolves tier t with overrides l and quotas q, scaled by share
// (1 = the whole budget; cluster fallback uses 1/ExpectedNodes). Per-
// connection numbers are never scaled.
func makePolicy(kind TierKind, t Tier, l Limits, q Quotas, share float64) *policy {
	p := &policy{
		credits: t.Credits, creditWindow: int64(t.CreditWindow),
		maxConns: t.MaxConnections, connects: t.Connects, connectWin: int64(t.ConnectWindow),
		maxSubs: t.MaxSubscriptions, connRate: t.ConnMessagesPerSecond,
		limits: l, quotas: q, tier: kind,
	}
	if l.CreditsPerMinute > 0 {
		p.credits = max(1, int64(math.Round(float64(l.CreditsPerMinute)*float64(t.CreditWindow)/float64(time.Minute))))
	}
	if l.MaxConnections > 0 {
		p.maxConns = l.MaxConnections
	}
	if l.MaxSubscriptions > 0 {
		p.maxSubs = l.MaxSubscriptions
	}
	if l.ConnMessagesPerSecond > 0 {
		p.connRate = l.ConnMessagesPerSecond
	}
	p.connQ = t.ConnBurst
	connW := int64(float64(t.ConnBurst) * float64(time.Second) / p.connRate)
	if share > 0 && share < 1 {
		scale := func(v int64) int64 { return max(1, int64(math.Ceil(float64(v)*share))) }
		p.credits, p.maxConns, p.connects = scale(p.credits), scale(p.maxConns), scale(p.connects)
		for _, w := range quotaCheckOrder {
			if v := q.limit(w); v > 0 {
				p.quotas.set(w, scale(v))
			}
		}
	}
	p.hasQuotas = p.quotas.any()
	p.creditG = newGCRA(p.credits, p.creditWindow)
	p.connG = newGCRA(p.connQ, connW)
	p.connectG = newGCRA(p.connects, p.connectWin)
	return p
}

func (q *Quotas) set(w QuotaWindow, v int64) {
	switch w {
	case QuotaTotal:
		q.Total = v
	case QuotaDaily:
		q.Daily = v
	case QuotaWeekly:
		q.Weekly = v
	case QuotaMonthly:
		q.Monthly = v
	}
}
