package node

import (
	"context"
	"time"
)

// purgeBatch is the most keys one Purge call deletes (one bbolt
// transaction); the job calls again while batches come back full.
const purgeBatch = 1000

// purge deletes, every PurgeInterval until ctx ends, the keys revoked more
// than RevokedRetention ago (with their usage and events) and the expired
// replay signatures. With Redis every node runs it; a key is deleted once
// (each deletion re-checks the record in a transaction).
func (n *Node) purge(ctx context.Context) {
	t := time.NewTicker(n.cfg.PurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.purgeOnce(ctx, time.Now())
		}
	}
}

// purgeOnce runs one round at now; it returns the number of keys deleted.
// Until the store's layout upgrade has been done (Redis unreachable at
// start), the round tries it first.
func (n *Node) purgeOnce(ctx context.Context, now time.Time) int {
	if !n.upgraded.Load() {
		if err := upgradeStore(n.rawStore); err != nil {
			n.log.Warn().Err(err).Msg("key store upgrade failed; retried next round")
			return 0
		}
		n.upgraded.Store(true)
		n.log.Info().Msg("key store upgraded")
	}
	total := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		k, err := n.store.Purge(pctx, now.Add(-n.cfg.RevokedRetention), now, purgeBatch)
		cancel()
		total += k
		n.purged.Add(float64(k))
		if err != nil {
			n.log.Warn().Err(err).Msg("key purge failed; retried next round")
			break
		}
		if k < purgeBatch || ctx.Err() != nil {
			break
		}
	}
	if total > 0 {
		n.log.Info().Int("keys", total).Dur("retention", n.cfg.RevokedRetention).Msg("revoked keys purged")
	}
	return total
}
