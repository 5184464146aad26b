package loadtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// relay is a tiny stand-in for the broker: it speaks just enough of
// docs/protocol.md (subscribe, ack, error, market frames) over coder/websocket
// and relays NATS subjects <prefix>.<source>.<symbol>. It serves the tests
// that need a broker misbehaving on cue (every n-th upgrade refused, a
// symbol refused) or made-up /metrics; realbroker_test.go runs the
// accounting against the real broker.
type relay struct {
	URL string

	nc          *nats.Conn
	refuseEvery int            // answer every n-th upgrade with 429; 0: never
	badSymbol   string         // refuse subscribing to this symbol with INVALID_PARAMS
	upgrades    atomic.Int64   // upgrade requests seen
	wg          sync.WaitGroup // running handlers
	metrics     func() (float64, float64)
}

func newRelay(t *testing.T, natsURL string, configure func(*relay)) *relay {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{nc: nc}
	if configure != nil {
		configure(r)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", r.serveWS)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		rss, cpu := r.metrics()
		_, _ = io.WriteString(w, "# TYPE process_resident_memory_bytes gauge\n")
		_, _ = io.WriteString(w, "process_resident_memory_bytes "+ftoa(rss)+"\nprocess_cpu_seconds_total "+ftoa(cpu)+"\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		r.wg.Wait()
		nc.Close()
	})
	r.URL = srv.URL
	return r
}

func (r *relay) wsURL() string { return "ws" + strings.TrimPrefix(r.URL, "http") + "/ws" }

func (r *relay) serveWS(w http.ResponseWriter, req *http.Request) {
	n := r.upgrades.Add(1)
	if r.refuseEvery > 0 && n%int64(r.refuseEvery) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"too many connections","code":"TOO_MANY_CONNECTIONS"}`)
		return
	}
	c, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	r.wg.Add(1)
	defer r.wg.Done()
	defer c.CloseNow()
	ctx := context.Background()
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for {
		_, p, err := c.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			Method string            `json:"method"`
			Params map[string]string `json:"params"`
		}
		if json.Unmarshal(p, &m) != nil || m.Method != "subscribe" {
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"channel":"error","data":{"code":"BAD_REQUEST","message":"bad"}}`))
			continue
		}
		src, sym := m.Params["source"], m.Params["symbol"]
		if sym == r.badSymbol {
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"channel":"error","data":{"code":"INVALID_PARAMS","message":"no"}}`))
			continue
		}
		s, err := r.nc.Subscribe("md."+src+"."+sym, func(msg *nats.Msg) {
			frame := append([]byte(`{"channel":"`+src+`","data":`), msg.Data...)
			_ = c.Write(ctx, websocket.MessageText, append(frame, '}'))
		})
		if err != nil {
			return
		}
		subs = append(subs, s)
		_ = r.nc.Flush() // the NATS subscription is live before the ack
		ack, _ := json.Marshal(map[string]any{"channel": "subscribe", "data": m.Params})
		_ = c.Write(ctx, websocket.MessageText, ack)
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
