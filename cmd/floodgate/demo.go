package main

import (
	"context"
	"errors"

	"floodgate/fanout/demofeed"

	"github.com/nats-io/nats.go"
)

// startDemo publishes the synthetic market on its own NATS connection, as
// an external feed would, until the node closes.
func (n *node) startDemo(natsURL, prefix string) error {
	pub, err := nats.Connect(natsURL, nats.Name("floodgate demo feed"), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	feed := demofeed.New(demofeed.Options{Publish: pub.Publish, Prefix: prefix})
	ctx, cancel := context.WithCancel(context.Background())
	n.stopDemo = cancel
	n.demoDone = make(chan struct{})
	go func() {
		defer close(n.demoDone)
		defer pub.Close()
		if err := feed.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error().Err(err).Msg("demo feed stopped")
		}
	}()
	n.log.Info().Strs("subjects", feed.Subjects()).Dur("interval", feed.Interval()).Msg("demo feed publishing")
	return nil
}
