package broker

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// KeyStat is the live activity of one key on this node.
type KeyStat struct {
	Prefix      string
	Connections int
	MsgsIn      int64 // client frames of its live sessions
	MsgsOut     int64 // frames written to its live sessions
	// Delivered counts the channel frames written to its live sessions
	// and their bytes (Options.MeterDelivery; zero without).
	Delivered Delivered
}

// TopKeys returns up to n keys with live sessions, most connections first
// (then most messages in). It walks every session: for scrapes and the
// operator, not the hot path.
func (s *Server) TopKeys(n int) []KeyStat {
	byPrefix := make(map[string]*KeyStat)
	for _, sess := range s.snapshot(nil) {
		p := sess.id.KeyPrefix
		if p == "" {
			continue
		}
		st := byPrefix[p]
		if st == nil {
			st = &KeyStat{Prefix: p}
			byPrefix[p] = st
		}
		st.Connections++
		st.MsgsIn += sess.msgsIn.Load()
		st.MsgsOut += sess.msgsOut.Load()
		st.Delivered.Msgs += sess.deliveredMsgs.Load()
		st.Delivered.Bytes += sess.deliveredBytes.Load()
	}
	out := make([]KeyStat, 0, len(byPrefix))
	for _, st := range byPrefix {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Connections != out[j].Connections {
			return out[i].Connections > out[j].Connections
		}
		if out[i].MsgsIn != out[j].MsgsIn {
			return out[i].MsgsIn > out[j].MsgsIn
		}
		return out[i].Prefix < out[j].Prefix
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// topKeysCollector exports per-key series for the TopKeys keys only, so
// the number of series stays bounded whatever the number of keys.
type topKeysCollector struct {
	srv                           *Server
	n                             int
	conns, in, out, dmsgs, dbytes *prometheus.Desc
}

func newTopKeysCollector(srv *Server, n int) *topKeysCollector {
	return &topKeysCollector{
		srv: srv, n: n,
		conns: prometheus.NewDesc("floodgate_top_key_connections",
			"Live connections of the keys with the most connections on this node (top N only).", []string{"key_prefix"}, nil),
		in: prometheus.NewDesc("floodgate_top_key_messages_in",
			"Client frames received on the live sessions of the top N keys.", []string{"key_prefix"}, nil),
		out: prometheus.NewDesc("floodgate_top_key_messages_out",
			"Frames written to the live sessions of the top N keys.", []string{"key_prefix"}, nil),
		dmsgs: prometheus.NewDesc("floodgate_top_key_messages_delivered",
			"Channel frames delivered to the live sessions of the top N keys (delivery metering).", []string{"key_prefix"}, nil),
		dbytes: prometheus.NewDesc("floodgate_top_key_bytes_delivered",
			"Bytes of those frames as written to the socket (compressed on deflate connections).", []string{"key_prefix"}, nil),
	}
}

func (c *topKeysCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.conns
	ch <- c.in
	ch <- c.out
	ch <- c.dmsgs
	ch <- c.dbytes
}

func (c *topKeysCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range c.srv.TopKeys(c.n) {
		ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(k.Connections), k.Prefix)
		ch <- prometheus.MustNewConstMetric(c.in, prometheus.GaugeValue, float64(k.MsgsIn), k.Prefix)
		ch <- prometheus.MustNewConstMetric(c.out, prometheus.GaugeValue, float64(k.MsgsOut), k.Prefix)
		ch <- prometheus.MustNewConstMetric(c.dmsgs, prometheus.GaugeValue, float64(k.Delivered.Msgs), k.Prefix)
		ch <- prometheus.MustNewConstMetric(c.dbytes, prometheus.GaugeValue, float64(k.Delivered.Bytes), k.Prefix)
	}
}
