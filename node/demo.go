package node

import (
	"context"
	"errors"

	"floodgate/fanout/demofeed"

	"github.com/nats-io/nats.go"
)

// startDemo publishes the synthetic market on its own NATS connection, as
// an external feed would, on a goroutine of goBG until the node stops.
func (n *Node) startDemo(goBG func(func(context.Context))) error {
	pub, err := nats.Connect(n.natsURL, nats.Name("floodgate demo feed"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	feed := demofeed.New(demofeed.Options{Publish: pub.Publish, Prefix: n.sources.Prefix()})
	goBG(func(ctx context.Context) {
		defer pub.Close()
		if err := feed.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error().Err(err).Msg("demo feed stopped")
		}
	})
	n.log.Info().Strs("subjects", feed.Subjects()).Dur("interval", feed.Interval()).Msg("demo feed publishing")
	return nil
}
