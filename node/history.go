package node

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"floodgate/fanout"
)

// History modes (serve --history): whether the node keeps a JetStream
// history of the market subjects (sequence numbers, snapshots, resume).
const (
	// HistoryAuto: on with the embedded NATS server, off with --nats-url.
	HistoryAuto = "auto"
	// HistoryOn: on; with an external NATS the node is not ready (reason
	// history) while the stream cannot be made or reached.
	HistoryOn = "on"
	// HistoryOff: every channel is live-only; since and snapshot are
	// refused with INVALID_PARAMS.
	HistoryOff = "off"
)

// historyStartTimeout bounds the first attempt to find or make the stream
// in New; after it the history's own check keeps trying.
const historyStartTimeout = 5 * time.Second

// historyWanted reports whether the node runs the history, and checks the
// history section when it does.
func (c *Config) historyWanted() (bool, error) {
	var on bool
	switch c.History {
	case "", HistoryAuto:
		on = c.NATSURL == "" && !c.Sidecar
	case HistoryOn:
		on = !c.Sidecar
	case HistoryOff:
	default:
		return false, fmt.Errorf("--history %q: want %s, %s or %s", c.History, HistoryAuto, HistoryOn, HistoryOff)
	}
	if on && c.File != nil {
		if err := c.File.History.Validate(); err != nil {
			return false, err
		}
	}
	return on, nil
}

// embeddedStoreDir is where the embedded NATS server keeps JetStream (the
// history stream): DataDir/nats.
func (c *Config) embeddedStoreDir() string { return filepath.Join(c.DataDir, "nats") }

// newHistory builds the history of the node's sources on its NATS
// connection; it does no I/O (startHistory makes the stream).
func (n *Node) newHistory() (*fanout.History, error) {
	return fanout.NewHistory(fanout.HistoryOptions{
		Conn: n.nc, Sources: n.sources, Config: n.cfg.File.History, Registerer: n.reg,
		OnChange: func(err error) {
			if err != nil {
				n.log.Error().Err(err).Msg("history unavailable: channels deliver live from the raw subjects, without seq/prev; /readyz says history")
				return
			}
			n.log.Info().Str("stream", n.history.Stream()).Msg("history available again: channels deliver seq/prev")
		},
	})
}

// startHistory finds or makes the stream once; failing that the node runs
// live-only and not ready (reason history) until the history's check
// succeeds.
func (n *Node) startHistory() {
	ctx, cancel := context.WithTimeout(context.Background(), historyStartTimeout)
	defer cancel()
	if err := n.history.Start(ctx); err != nil {
		return // logged by OnChange
	}
	n.log.Info().Str("stream", n.history.Stream()).Int64("epoch", n.history.Epoch()).
		Strs("subjects", n.sources.HistorySubjects()).Msg("history on: JetStream stream ready")
}
