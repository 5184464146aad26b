package procnode

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// dialTimeout bounds Dial's dial, upgrade and handshake.
const dialTimeout = 10 * time.Second

// Upgrade opens a websocket to n's /ws with the API key key (none when
// "") through the suite's HTTP client. On a refusal the response is the
// server's answer, its body unread.
func (n *Node) Upgrade(ctx context.Context, key string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if key != "" {
		h.Set("PF-API-KEY", key)
	}
	return websocket.Dial(ctx, n.wsURL, &websocket.DialOptions{HTTPHeader: h, HTTPClient: n.suite.http})
}

// Dial is Upgrade within 10 s; its error names the node and, when the
// server refused, the HTTP status and body.
func (n *Node) Dial(key string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	conn, resp, err := n.Upgrade(ctx, key)
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("dial %s: %w (HTTP %d %s)", n.id, err, resp.StatusCode, b)
		}
		return nil, fmt.Errorf("dial %s: %w", n.id, err)
	}
	return conn, nil
}
