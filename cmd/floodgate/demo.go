package main

// startDemo starts the synthetic market feed; wired once fanout/demofeed
// lands.
func (n *node) startDemo(prefix string) {
	n.log.Warn().Str("prefix", prefix).Msg("demo feed not available in this build")
}
