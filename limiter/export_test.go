package limiter

import (
	"context"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Leased returns the cluster lease held by this node for identity (tests).
func (l *Limiter) Leased(identity string) int64 {
	id := l.tab.acquire(identity, nil)
	if id == nil || id.cl == nil {
		return 0
	}
	defer id.unpin()
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cl.leased
}

// AdmitReasons exposes the sentinel -> metric label map (tests).
var AdmitReasons = admitReasons

// BudgetCount is the number of Budget values (tests).
const BudgetCount = numBudgets

// TakeOnce runs the lease script for one credit: the cost of a Redis round
// trip per frame (benchmark reference).
func TakeOnce(ctx context.Context, rc redis.UniversalClient, prefix string, now time.Time) error {
	return leaseScript.Run(ctx, rc, []string{prefix + ":credits", prefix + ":quota", prefix + ":total"},
		now.UnixMicro(), 1<<30, 60_000_000, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).Err()
}

// CellSize is the size of an identity cell struct (tests).
const CellSize = unsafe.Sizeof(identity{})
