//go:build chaos

package chaos_test

import (
	"net/http"
	"testing"
	"time"

	"floodgate/internal/testdeps/procnode"
)

// revoke revokes prefix through n's operator API and returns how long the
// call took.
func revoke(t *testing.T, n *procnode.Node, prefix string) time.Duration {
	t.Helper()
	start := time.Now()
	status, env, err := n.Admin("PATCH", "/admin/v1/keys/"+prefix, map[string]any{"status": "revoked"})
	took := time.Since(start)
	if err != nil || status != http.StatusOK {
		t.Fatalf("revoke %s on %s: %d %+v %v (after %v)", prefix, n.ID(), status, env, err, took)
	}
	return took
}
