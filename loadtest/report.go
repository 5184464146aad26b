package loadtest

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one Run. It marshals to JSON with stable
// snake_case names (the --json file); figures that need Config.MetricsURL are
// 0 without it. Durations are in seconds (_s) or milliseconds (_ms).
type Report struct {
	Scenario  string  `json:"scenario"`
	URL       string  `json:"url"`
	Conns     int     `json:"conns"`
	Channels  int     `json:"channels"`
	Rate      float64 `json:"rate"`
	Size      int     `json:"size"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`

	ConnectionsOK     int            `json:"connections_ok"`
	ConnectionsFailed int            `json:"connections_failed"`
	ConnectFailures   map[string]int `json:"connect_failures"` // by FailReason: "http 429 TOO_MANY_CONNECTIONS", "timeout", ...
	ConnectP50Ms      float64        `json:"connect_p50_ms"`
	ConnectP99Ms      float64        `json:"connect_p99_ms"`

	Published          uint64  `json:"published"`           // measured messages published
	ExpectedDeliveries uint64  `json:"expected_deliveries"` // per channel: published × subscribers
	Delivered          uint64  `json:"delivered"`
	LossPct            float64 `json:"loss_pct"`
	DeliveredPerS      float64 `json:"delivered_per_s"`
	LatencyP50Ms       float64 `json:"latency_p50_ms"`
	LatencyP90Ms       float64 `json:"latency_p90_ms"`
	LatencyP99Ms       float64 `json:"latency_p99_ms"`
	LatencyP999Ms      float64 `json:"latency_p999_ms"`
	LatencyMaxMs       float64 `json:"latency_max_ms"`

	WireBytesPerFrame float64 `json:"wire_bytes_per_frame"` // measured market frames: bytes on the wire (compressed or not) per frame
	DeflateConns      int     `json:"deflate_conns"`        // connections that negotiated permessage-deflate

	OutOfOrder  uint64         `json:"out_of_order"` // measured frames whose seq did not increase
	ErrorFrames uint64         `json:"error_frames"` // {"channel":"error"} after the subscribe ack
	Disconnects map[string]int `json:"disconnects"`  // connections the broker ended during the run, by FailReason

	BrokerRSSBytes       float64 `json:"broker_rss_bytes"`         // at the end of the run
	BrokerKiBPerConn     float64 `json:"broker_kib_per_conn"`      // RSS growth from before connecting to all connected
	BrokerCPUSPerMillion float64 `json:"broker_cpu_s_per_million"` // broker CPU seconds from publish start to end, per million delivered
	GeneratorCPUS        float64 `json:"generator_cpu_s"`          // this process's CPU seconds for the whole run
	ElapsedS             float64 `json:"elapsed_s"`

	Storm    *StormReport    `json:"storm,omitempty"`    // the storm scenario's churn
	Hot      *HotReport      `json:"hot,omitempty"`      // the hot scenario's join storm
	Resume   *ResumeReport   `json:"resume,omitempty"`   // the resume scenario's reconnect storm
	Throttle *ThrottleReport `json:"throttle,omitempty"` // the throttle scenario's identities
}

// errNoMetrics marks a sample skipped for want of Config.MetricsURL.
var errNoMetrics = errors.New("loadtest: no metrics URL")

// metricsSamples are the broker samples of one run; an unusable sample has
// its error set.
type metricsSamples struct {
	base, connected, cpuStart, end             brokerSample
	baseErr, connectedErr, cpuStartErr, endErr error
}

// report assembles the Report after every session has ended.
func (r *runner) report(expected uint64, measured time.Duration, m metricsSamples) Report {
	cfg := r.cfg
	rep := Report{
		Scenario: cfg.Scenario, URL: cfg.URL, Conns: cfg.Conns, Channels: cfg.Channels,
		Rate: cfg.Rate, Size: cfg.Size, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		ConnectFailures:    map[string]int{},
		Disconnects:        map[string]int{},
		ExpectedDeliveries: expected,
	}
	for _, n := range r.pub.Measured() {
		rep.Published += n
	}
	for _, s := range r.sessions {
		switch s.state.Load() {
		case stateSubscribed:
			rep.ConnectionsOK++
			rep.Delivered += s.delivered.Load()
			rep.WireBytesPerFrame += float64(s.wireBytes.Load())
			if c := s.conn.Load(); c != nil && c.Deflated() {
				rep.DeflateConns++
			}
			rep.OutOfOrder += s.outOfOrder.Load()
			rep.ErrorFrames += s.errFrames.Load()
		default:
			rep.ConnectionsFailed++
			rep.ConnectFailures[s.failReason]++
		}
	}
	if rep.Delivered > 0 {
		rep.WireBytesPerFrame /= float64(rep.Delivered)
	}
	if expected > 0 && rep.Delivered < expected {
		rep.LossPct = 100 * float64(expected-rep.Delivered) / float64(expected)
	}
	if measured > 0 {
		rep.DeliveredPerS = float64(rep.Delivered) / measured.Seconds()
	}
	h := r.latency.merged()
	rep.LatencyP50Ms = microsToMs(h.ValueAtQuantile(50))
	rep.LatencyP90Ms = microsToMs(h.ValueAtQuantile(90))
	rep.LatencyP99Ms = microsToMs(h.ValueAtQuantile(99))
	rep.LatencyP999Ms = microsToMs(h.ValueAtQuantile(99.9))
	rep.LatencyMaxMs = microsToMs(h.Max())

	r.mu.Lock()
	rep.ConnectP50Ms = microsToMs(r.connectHist.ValueAtQuantile(50))
	rep.ConnectP99Ms = microsToMs(r.connectHist.ValueAtQuantile(99))
	for k, v := range r.disconnects {
		rep.Disconnects[k] = v
	}
	r.mu.Unlock()

	if m.endErr == nil {
		rep.BrokerRSSBytes = m.end.rssBytes
	}
	if m.baseErr == nil && m.connectedErr == nil && rep.ConnectionsOK > 0 {
		rep.BrokerKiBPerConn = (m.connected.rssBytes - m.base.rssBytes) / 1024 / float64(rep.ConnectionsOK)
	}
	if m.cpuStartErr == nil && m.endErr == nil && rep.Delivered > 0 {
		rep.BrokerCPUSPerMillion = (m.end.cpuSeconds - m.cpuStart.cpuSeconds) / float64(rep.Delivered) * 1e6
	}
	if r.storm != nil {
		rep.Storm = r.storm.report()
	}
	return rep
}

// Gate checks the report against --max-loss (percent) and --max-p99; a
// negative limit is not checked. A throttle report also fails when an
// identity's admitted rate is outside the tolerance. It returns nil or an
// error wrapping ErrThreshold that names every exceeded limit.
func (rep Report) Gate(maxLossPct float64, maxP99 time.Duration) error {
	var why []string
	if maxLossPct >= 0 && rep.LossPct > maxLossPct {
		why = append(why, fmt.Sprintf("loss %.3f%% > %.3f%%", rep.LossPct, maxLossPct))
	}
	if maxP99 >= 0 && rep.LatencyP99Ms > float64(maxP99)/float64(time.Millisecond) {
		why = append(why, fmt.Sprintf("p99 %.2f ms > %v", rep.LatencyP99Ms, maxP99))
	}
	if r := rep.Resume; r != nil {
		if r.Gaps > 0 || r.Duplicates > 0 || r.Lost > 0 || r.Failed > 0 || r.NotRecovered > 0 {
			why = append(why, fmt.Sprintf("resume: %d gaps, %d duplicates, %d lost, %d failed, %d not recovered",
				r.Gaps, r.Duplicates, r.Lost, r.Failed, r.NotRecovered))
		}
	}
	if t := rep.Throttle; t != nil {
		for _, id := range t.PerIdentity {
			if !id.WithinTolerance {
				why = append(why, fmt.Sprintf("%s admitted %.3f/s, configured %.3f/s (%+.1f%%, tolerance %g%%)",
					id.Identity, id.AdmittedPerS, id.ConfiguredPerS, id.ErrorPct, t.TolerancePct))
			}
		}
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrThreshold, strings.Join(why, ", "))
}

// WriteTable writes the final human-readable report.
func (rep Report) WriteTable(w io.Writer) error {
	if rep.Throttle != nil {
		return rep.writeThrottleTable(w)
	}
	if rep.Hot != nil {
		return rep.writeHotTable(w)
	}
	if rep.Resume != nil {
		return rep.writeResumeTable(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("scenario", "%s: %d conns on %d channels, %g msgs/s of %d B for %gs (warm-up %gs)",
		rep.Scenario, rep.Conns, rep.Channels, rep.Rate, rep.Size, rep.DurationS, rep.WarmupS)
	row("broker", "%s", rep.URL)
	row("connections", "ok %d, failed %d%s", rep.ConnectionsOK, rep.ConnectionsFailed, reasons(rep.ConnectFailures))
	row("connect latency", "p50 %.2f ms, p99 %.2f ms", rep.ConnectP50Ms, rep.ConnectP99Ms)
	if s := rep.Storm; s != nil {
		row("steady population", "%d connections; the rows below are theirs", s.SteadyConns)
		row("churn", "%d connects at %.1f/s (ramp %g/s, hold %gs)", s.ChurnAttempts, s.ChurnPerS, s.Ramp, s.HoldS)
		row("churn connects", "ok %d, failed %d%s", s.ConnectsOK, s.ConnectsFailed, reasons(s.ConnectFailures))
		row("churn connect", "p50 %.2f ms, p99 %.2f ms; to subscribe ack p50 %.2f ms, p99 %.2f ms",
			s.ConnectP50Ms, s.ConnectP99Ms, s.SubscribeP50Ms, s.SubscribeP99Ms)
		row("churn received", "%d frames; ended by the broker %d%s", s.Received, sum(s.Disconnects), reasons(s.Disconnects))
	}
	row("published", "%d", rep.Published)
	row("expected deliveries", "%d", rep.ExpectedDeliveries)
	row("delivered", "%d (%.0f msgs/s)", rep.Delivered, rep.DeliveredPerS)
	row("loss", "%.3f %%", rep.LossPct)
	row("latency", "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms",
		rep.LatencyP50Ms, rep.LatencyP90Ms, rep.LatencyP99Ms, rep.LatencyP999Ms, rep.LatencyMaxMs)
	row("wire bytes", "%.0f per delivered frame (%d connections with deflate)", rep.WireBytesPerFrame, rep.DeflateConns)
	row("out of order", "%d", rep.OutOfOrder)
	row("error frames", "%d", rep.ErrorFrames)
	row("disconnects", "%d%s", sum(rep.Disconnects), reasons(rep.Disconnects))
	if rep.BrokerRSSBytes > 0 {
		row("broker RSS", "%.1f MiB, %.1f KiB per connection", rep.BrokerRSSBytes/(1<<20), rep.BrokerKiBPerConn)
		row("broker CPU", "%.3f s per million delivered", rep.BrokerCPUSPerMillion)
	} else {
		row("broker RSS, CPU", "n/a (no --metrics-url)")
	}
	row("generator CPU", "%.2f s over %.1f s", rep.GeneratorCPUS, rep.ElapsedS)
	return tw.Flush()
}

// sum adds up a reason count map.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// reasons formats a reason count map as " (a 2, b 1)", sorted by reason.
func reasons(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// writeHotTable writes the hot scenario's report.
func (rep Report) writeHotTable(w io.Writer) error {
	h := rep.Hot
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("scenario", "hot: %d joiners on one channel beside %d steady connections, %g msgs/s over the two", h.Joiners, h.SteadyConns, rep.Rate)
	row("broker", "%s", rep.URL)
	row("join", "%d ok, %d failed%s in %.3f s (%.0f joins/s)", h.JoinedOK, h.JoinFailed, reasons(h.JoinFailures), h.JoinS, h.JoinsPS)
	row("leave", "%d ok in %.3f s", h.LeftOK, h.LeaveS)
	row("broker during join", "CPU %.3f s, allocated %.1f MiB", h.StormCPUS, h.StormAllocBytes/(1<<20))
	row("broker during leave", "CPU %.3f s, allocated %.1f MiB", h.LeaveCPUS, h.LeaveAllocBytes/(1<<20))
	row("hot frames received", "%d", h.HotReceived)
	if h.Snapshots > 0 {
		row("snapshot after the ack", "%d joiners: p50 %.3f ms, p99 %.3f ms, max %.3f ms", h.Snapshots,
			h.SnapshotAfterAck.P50Ms, h.SnapshotAfterAck.P99Ms, h.SnapshotAfterAck.MaxMs)
	}
	row("steady before storm", "p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)", h.SteadyBefore.P50Ms, h.SteadyBefore.P99Ms, h.SteadyBefore.MaxMs, h.SteadyBefore.Samples)
	row("steady during storm", "p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)", h.SteadyDuring.P50Ms, h.SteadyDuring.P99Ms, h.SteadyDuring.MaxMs, h.SteadyDuring.Samples)
	row("steady connections", "ok %d, failed %d%s; disconnects %d%s", rep.ConnectionsOK, rep.ConnectionsFailed, reasons(rep.ConnectFailures), sum(rep.Disconnects), reasons(rep.Disconnects))
	row("generator CPU", "%.2f s over %.1f s", rep.GeneratorCPUS, rep.ElapsedS)
	return tw.Flush()
}

// writeResumeTable writes the resume scenario's report.
func (rep Report) writeResumeTable(w io.Writer) error {
	r := rep.Resume
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("scenario", "resume: %d conns on one channel at %g msgs/s, away %gs, then all back with since", r.Conns, rep.Rate, r.AwayS)
	row("broker", "%s", rep.URL)
	row("first subscribe", "ok %d, failed %d%s", rep.ConnectionsOK, rep.ConnectionsFailed, reasons(rep.ConnectFailures))
	row("missed while away", "%d messages each", r.Missed)
	row("resumed", "%d ok, %d failed%s; recovered %d, not recovered %d", r.Resumed, r.Failed, reasons(r.Failures), r.Recovered, r.NotRecovered)
	row("frames after the resume", "%d replayed, %d live", r.Replayed, r.LiveFrames)
	row("gaps, duplicates, lost", "%d, %d, %d", r.Gaps, r.Duplicates, r.Lost)
	row("live after the storm's start", "p50 %.1f ms, p99 %.1f ms, last %.3f s", r.LiveP50Ms, r.LiveP99Ms, r.LastLiveS)
	if r.StormCPUS > 0 {
		row("broker during the storm", "CPU %.3f s, allocated %.1f MiB", r.StormCPUS, r.StormAllocBytes/(1<<20))
	} else {
		row("broker during the storm", "n/a (no --metrics-url)")
	}
	row("generator CPU", "%.2f s over %.1f s", rep.GeneratorCPUS, rep.ElapsedS)
	return tw.Flush()
}

// startProgress prints a line every ProgressInterval to Config.Progress until
// the returned stop function is called; stop waits for the goroutine.
//
//	[    3s] conns 1000 ok, 0 failed | pub 100/s | deliv 100000/s | p99 1.92 ms | err 0 | disc 0
//
// The storm scenario appends "| churn ok N, failed M".
func (r *runner) startProgress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(r.cfg.ProgressInterval)
		defer t.Stop()
		start, last := time.Now(), time.Now()
		var lastPub, lastDeliv uint64
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				ok, failed, deliv, errs := r.counts()
				pub := r.pub.Total()
				secs := now.Sub(last).Seconds()
				p99 := "-"
				if h := r.latency.merged(); h.TotalCount() > 0 {
					p99 = fmt.Sprintf("%.2f ms", microsToMs(h.ValueAtQuantile(99)))
				}
				r.mu.Lock()
				disc := 0
				for _, n := range r.disconnects {
					disc += n
				}
				r.mu.Unlock()
				churn := ""
				if s := r.storm; s != nil {
					churn = fmt.Sprintf(" | churn ok %d, failed %d", s.ok.Load(), s.failed.Load())
				}
				fmt.Fprintf(r.cfg.Progress, "[%5.0fs] conns %d ok, %d failed | pub %.0f/s | deliv %.0f/s | p99 %s | err %d | disc %d%s\n",
					now.Sub(start).Seconds(), ok, failed,
					float64(pub-lastPub)/secs, float64(deliv-lastDeliv)/secs, p99, errs, disc, churn)
				last, lastPub, lastDeliv = now, pub, deliv
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// counts sums the sessions' states and counters for the progress line.
func (r *runner) counts() (ok, failed int, delivered, errFrames uint64) {
	for _, s := range r.sessions {
		switch s.state.Load() {
		case stateSubscribed:
			ok++
			delivered += s.delivered.Load()
			errFrames += s.errFrames.Load()
		case stateFailed:
			failed++
		}
	}
	return ok, failed, delivered, errFrames
}
