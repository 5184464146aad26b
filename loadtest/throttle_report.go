package loadtest

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// ThrottleReport is the outcome of a throttle run (Report.Throttle).
type ThrottleReport struct {
	Identities      int              `json:"identities"`
	SendRate        float64          `json:"send_rate"`        // --send-rate, pings/s per connection; 0: automatic
	ExpectRate      float64          `json:"expect_rate"`      // --expect-rate, credits per minute; 0: from "q"
	CreditWindowS   float64          `json:"credit_window_s"`  // --credit-window, used with "q"
	TolerancePct    float64          `json:"tolerance_pct"`    // --tolerance
	WithinTolerance bool             `json:"within_tolerance"` // every identity within tolerance
	PerIdentity     []IdentityReport `json:"per_identity"`
}

// IdentityReport is one throttle identity's outcome. Counts cover the
// measurement (after the warm-up).
type IdentityReport struct {
	Identity         string         `json:"identity"` // "key:<prefix>" or "ip:<addr>"
	Conns            int            `json:"conns"`
	SendPerS         float64        `json:"send_per_s"`   // pings/s per connection at most, as paced at the end
	Admitted         uint64         `json:"admitted"`     // pongs
	Refused          uint64         `json:"refused"`      // RATE_LIMITED for the identity's credits
	RefusedConn      uint64         `json:"refused_conn"` // RATE_LIMITED for the connection's message rate
	OtherErrors      uint64         `json:"other_errors"` // any other error reply
	AdmittedBySecond []int          `json:"admitted_by_second"`
	RefusedBySecond  []int          `json:"refused_by_second"` // both kinds of RATE_LIMITED
	AdmittedPerS     float64        `json:"admitted_per_s"`    // estimated as Method says
	Method           string         `json:"method"`            // "refusals", "remaining" or "count" (see the package doc)
	ConfiguredPerS   float64        `json:"configured_per_s"`  // --expect-rate / 60, or "q" / --credit-window; 0 unknown
	ErrorPct         float64        `json:"error_pct"`         // (admitted − configured) / configured, in percent
	WithinTolerance  bool           `json:"within_tolerance"`
	Closes           map[string]int `json:"closes"`          // connections the broker ended, by FailReason ("close 1008")
	Redials          int            `json:"redials"`         // successful redials after a close or failed dial
	RedialFailures   map[string]int `json:"redial_failures"` // failed redials, by FailReason
}

// report assembles the Report after every pinger has stopped.
func (t *throttle) report(measured time.Duration) Report {
	cfg := t.cfg
	rep := Report{
		Scenario: cfg.Scenario, URL: cfg.URL, Conns: cfg.Conns,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
		ConnectFailures: map[string]int{}, Disconnects: map[string]int{},
	}
	t.mu.Lock()
	rep.ConnectionsOK, rep.ConnectionsFailed = t.ok, t.failed
	for k, v := range t.connectFailures {
		rep.ConnectFailures[k] = v
	}
	rep.ConnectP50Ms = microsToMs(t.connectHist.ValueAtQuantile(50))
	rep.ConnectP99Ms = microsToMs(t.connectHist.ValueAtQuantile(99))
	t.mu.Unlock()

	tr := &ThrottleReport{
		Identities: cfg.Identities, SendRate: cfg.SendRate, ExpectRate: cfg.ExpectRate,
		CreditWindowS: cfg.CreditWindow.Seconds(), TolerancePct: cfg.TolerancePct, WithinTolerance: true,
	}
	for _, s := range t.idents {
		s.mu.Lock()
		ir := IdentityReport{
			Identity: s.name, Conns: s.conns, SendPerS: s.sendPerS,
			Admitted: s.admitted, Refused: s.refused, RefusedConn: s.refusedConn, OtherErrors: s.otherErrors,
			AdmittedBySecond: append([]int(nil), s.admittedBySecond...),
			RefusedBySecond:  append([]int(nil), s.refusedBySecond...),
			Closes:           map[string]int{}, Redials: s.redials, RedialFailures: map[string]int{},
		}
		ir.AdmittedPerS, ir.Method = s.admittedRate(t.measureFrom, measured)
		for k, v := range s.closes {
			ir.Closes[k] = v
			rep.Disconnects[k] += v
		}
		for k, v := range s.redialFailures {
			ir.RedialFailures[k] = v
		}
		s.mu.Unlock()
		ir.ConfiguredPerS = t.configuredPerS(s)
		if ir.ConfiguredPerS > 0 {
			ir.ErrorPct = 100 * (ir.AdmittedPerS - ir.ConfiguredPerS) / ir.ConfiguredPerS
			ir.WithinTolerance = math.Abs(ir.ErrorPct) <= cfg.TolerancePct
		}
		tr.WithinTolerance = tr.WithinTolerance && ir.WithinTolerance
		tr.PerIdentity = append(tr.PerIdentity, ir)
	}
	rep.Throttle = tr
	return rep
}

// writeThrottleTable writes the final report of a throttle run.
func (rep Report) writeThrottleTable(w io.Writer) error {
	t := rep.Throttle
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	send := "automatic"
	if t.SendRate > 0 {
		send = fmt.Sprintf("%g/s", t.SendRate)
	}
	row("scenario", "%s: %d identities, %d conns, sending %s per connection, for %gs (warm-up %gs)",
		rep.Scenario, t.Identities, rep.Conns, send, rep.DurationS, rep.WarmupS)
	row("broker", "%s", rep.URL)
	row("connections", "ok %d, failed %d%s", rep.ConnectionsOK, rep.ConnectionsFailed, reasons(rep.ConnectFailures))
	row("connect latency", "p50 %.2f ms, p99 %.2f ms", rep.ConnectP50Ms, rep.ConnectP99Ms)
	row("disconnects", "%d%s", sum(rep.Disconnects), reasons(rep.Disconnects))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "identity\tconns\tadmitted\trefused\tadmitted/s\tconfigured/s\terror\twithin ±"+
		fmt.Sprintf("%g", t.TolerancePct)+"%\tmethod\t")
	for _, id := range t.PerIdentity {
		within := "no"
		if id.WithinTolerance {
			within = "yes"
		}
		refused := fmt.Sprintf("%d", id.Refused)
		if id.RefusedConn > 0 {
			refused += fmt.Sprintf(" (+%d conn)", id.RefusedConn)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.3f\t%.3f\t%+.2f%%\t%s\t%s\t\n", id.Identity, id.Conns, id.Admitted, refused,
			id.AdmittedPerS, id.ConfiguredPerS, id.ErrorPct, within, id.Method)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "every identity within tolerance"
	if !t.WithinTolerance {
		var out []string
		for _, id := range t.PerIdentity {
			if !id.WithinTolerance {
				out = append(out, id.Identity)
			}
		}
		verdict = "outside tolerance: " + strings.Join(out, ", ")
	}
	_, err := fmt.Fprintf(w, "\n%s; generator CPU %.2f s over %.1f s\n", verdict, rep.GeneratorCPUS, rep.ElapsedS)
	return err
}

// startProgress prints a throttle progress line every ProgressInterval:
//
//	[    3s] conns 4 open | admitted 10.0/s | refused 1.0/s | closes 0
func (t *throttle) startProgress() (stop func()) {
	if t.cfg.Progress == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(t.cfg.ProgressInterval)
		defer tick.Stop()
		start, last := time.Now(), time.Now()
		var lastAdm, lastRef uint64
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				open, closes := 0, 0
				for _, pg := range t.pingers {
					if pg.conn.Load() != nil {
						open++
					}
				}
				for _, s := range t.idents {
					s.count(func() { closes += sum(s.closes) })
				}
				adm, ref := t.admitted.Load(), t.refused.Load()
				secs := now.Sub(last).Seconds()
				fmt.Fprintf(t.cfg.Progress, "[%5.0fs] conns %d open | admitted %.1f/s | refused %.1f/s | closes %d\n",
					now.Sub(start).Seconds(), open, float64(adm-lastAdm)/secs, float64(ref-lastRef)/secs, closes)
				last, lastAdm, lastRef = now, adm, ref
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
