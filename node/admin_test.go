package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"floodgate/auth"
	"floodgate/console"
	"floodgate/keyapi"
	"floodgate/node"
	"floodgate/node/nodetest"

	"github.com/nats-io/nats.go"
)

// adminGet calls a node's operator API and decodes the envelope's data.
func adminGet(t *testing.T, base, path, token string, v any) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		var env keyapi.Envelope
		if err := json.Unmarshal(b, &env); err != nil || !env.Success {
			t.Fatalf("GET %s: %s", path, b)
		}
		if err := json.Unmarshal(env.Data, v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, string(b)
}

// TestConsoleIsServedOnlyWithAnAdminToken: /admin/ and the node's
// operator endpoints are 404 without a token; with one the page is served
// with its security headers and the endpoints want the token.
func TestConsoleIsServedOnlyWithAnAdminToken(t *testing.T) {
	off := nodetest.Start(t, node.Config{})
	for _, p := range []string{"/admin/", "/admin/app.js", "/admin/v1/stats", "/admin/v1/top-keys", "/admin/v1/nodes"} {
		if st, body := adminGet(t, off.APIURL, p, "", nil); st != 404 {
			t.Errorf("no admin token: GET %s: %d %s", p, st, body)
		}
	}
	on := nodetest.Start(t, node.Config{AdminToken: adminToken})
	resp, err := http.Get(on.APIURL + "/admin/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<script type="module" src="app.js">`) ||
		!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("GET /admin/: %d %v", resp.StatusCode, resp.Header)
	}
	if strings.Contains(string(body), adminToken) {
		t.Fatal("the page holds the admin token")
	}
	for _, p := range []string{"/admin/v1/stats", "/admin/v1/top-keys", "/admin/v1/nodes"} {
		st, body := adminGet(t, on.APIURL, p, "wrong-token", nil)
		if st != 401 || !strings.Contains(body, `"code":"UNAUTHORIZED"`) {
			t.Errorf("wrong token: GET %s: %d %s", p, st, body)
		}
		if st, body := adminGet(t, on.APIURL, p, adminToken, nil); st != 200 {
			t.Errorf("GET %s: %d %s", p, st, body)
		}
	}
	// The sidecar's operator endpoints are unchanged under the console.
	if st, body := adminGet(t, on.APIURL, "/admin/v1/keys", adminToken, nil); st != 200 {
		t.Fatalf("GET /admin/v1/keys: %d %s", st, body)
	}
}

// TestStatsRingCountsWhatTheNodeDoes: connections, channels, deliveries,
// client frames, refusals by code and the fan-out p99 of a sample come
// from the node's own registry; ?since= returns only newer samples.
func TestStatsRingCountsWhatTheNodeDoes(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	cl := n.dial(nil)
	cl.roundTrip(`{"method":"subscribe","params":{"source":"trades","symbol":"BTC"}}`, `{"channel":"subscribe","data":{"source":"trades","symbol":"BTC"},"rl":{"r":124,"q":125,"t":1}}`)
	n.n.SampleView(time.Now())
	cl.send(`{"method":"subscribe","params":{"source":"nope"}}`)
	if got := cl.read(); !strings.Contains(got, `"channel":"error"`) {
		t.Fatalf("bad subscribe: %s", got)
	}
	nc, err := nats.Connect(n.n.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for range 20 {
		if err := nc.Publish("md.trades.BTC", []byte(`[{"s":"BTC","p":"1"}]`)); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		cl.read()
	}
	n.n.SampleView(time.Now())

	var st console.StatsView
	if code, body := adminGet(t, n.n.APIURL, "/admin/v1/stats", adminToken, &st); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if len(st.Samples) == 0 || st.IntervalMS != 2000 || st.WindowMS != 600000 || st.Health.Status != "ready" || st.Node == "" {
		t.Fatalf("stats %+v", st)
	}
	// The node samples on its own too (every 2 s): look at the whole ring.
	var delivered float64
	var refusals map[string]float64
	var p99 *float64
	for _, s := range st.Samples {
		delivered += s.Deliveries
		if s.Refusals > 0 {
			refusals = s.RefusalsByCode
		}
		if s.FanoutP99MS != nil {
			p99 = s.FanoutP99MS
		}
	}
	last := st.Samples[len(st.Samples)-1]
	if delivered <= 0 || p99 == nil || *p99 <= 0 || last.ConnsAnonymous != 1 || last.ConnsKey != 0 || last.Channels != 1 || last.NATSSubscriptions != 1 ||
		!last.NATSConnected || !last.LimiterUp || last.RSSBytes <= 0 {
		t.Fatalf("last sample %+v (deliveries in the window %v, p99 %v)", last, delivered, p99)
	}
	if len(refusals) != 1 {
		t.Fatalf("refusals by code %v, want the unknown source's code", refusals)
	}
	var none console.StatsView
	adminGet(t, n.n.APIURL, "/admin/v1/stats?since="+jsonInt(last.T), adminToken, &none)
	for _, s := range none.Samples { // only the node's own later samples
		if s.T <= last.T {
			t.Fatalf("since=%d returned a sample of %d", last.T, s.T)
		}
	}
	for _, bad := range []string{"x", "-1"} {
		if code, body := adminGet(t, n.n.APIURL, "/admin/v1/stats?since="+bad, adminToken, nil); code != 400 || !strings.Contains(body, "BAD_REQUEST") {
			t.Fatalf("since=%s: %d %s", bad, code, body)
		}
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

// TestTopKeysByTrafficAndRefusals: the keys ranked by frames and by
// refusals (refused frames in the budget, refused upgrades in admission).
func TestTopKeysByTrafficAndRefusals(t *testing.T) {
	c := newCluster(t)
	n := c.node(nodeOpts{})
	busy := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Limits: &auth.Limits{CreditsPerMinute: 2}})
	quiet := n.createKey(keyapi.CreateKeyRequest{Account: accountA})
	off := n.createKey(keyapi.CreateKeyRequest{Account: accountA, Active: new(false)})
	bc := n.dial(keyHeader(busy.APIKey))
	n.dial(keyHeader(quiet.APIKey))
	for range 5 { // past the credits (2): RATE_LIMITED
		bc.send(`{"method":"ping"}`)
	}
	for range 5 {
		bc.read()
	}
	if _, status, _ := n.tryDial(keyHeader(off.APIKey)); status != 401 {
		t.Fatalf("inactive key: %d", status)
	}
	// The server counts a frame out after its socket write returns and adds
	// a session after the 101 is written: the client can see both first.
	waitUntil(t, func() bool {
		out, sessions := int64(0), 0
		for _, k := range n.srv.TopKeys(10) {
			sessions += k.Connections
			if k.Prefix == busy.Key.Prefix {
				out = k.MsgsOut
			}
		}
		return out == 5 && sessions == 2
	})
	now := time.Now()
	n.n.SampleView(now)

	var top console.TopKeysView
	if code, body := adminGet(t, n.n.APIURL, "/admin/v1/top-keys?n=5", adminToken, &top); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if top.WindowMS != 600000 || len(top.Traffic) == 0 || top.Traffic[0].Prefix != busy.Key.Prefix || top.Traffic[0].MsgsIn != 5 ||
		top.Traffic[0].MsgsOut != 5 || top.Traffic[0].Connections != 1 {
		t.Fatalf("traffic %+v", top.Traffic)
	}
	byPrefix := map[string]console.KeyRefusal{}
	for _, r := range top.Refusals {
		byPrefix[r.Prefix] = r
	}
	if r := byPrefix[busy.Key.Prefix]; r.Refusals != 3 || r.Codes["RATE_LIMITED"] != 3 {
		t.Fatalf("refusals %+v", top.Refusals)
	}
	if r := byPrefix[off.Key.Prefix]; r.Refusals != 1 || r.Codes["INACTIVE_API_KEY"] != 1 {
		t.Fatalf("refusals %+v", top.Refusals)
	}
	if _, ok := byPrefix[quiet.Key.Prefix]; ok {
		t.Fatalf("the quiet key has refusals: %+v", top.Refusals)
	}
	// Traffic of sessions that ended between samples still counts.
	bc.c.CloseNow()
	waitUntil(t, func() bool { return n.srv.Connections() == 1 })
	n.n.SampleView(time.Now())
	adminGet(t, n.n.APIURL, "/admin/v1/top-keys", adminToken, &top)
	if top.Traffic[0].Prefix != busy.Key.Prefix || top.Traffic[0].MsgsIn != 5 || top.Traffic[0].Connections != 0 {
		t.Fatalf("after the close: %+v", top.Traffic)
	}
	if code, _ := adminGet(t, n.n.APIURL, "/admin/v1/top-keys?n=0", adminToken, nil); code != 400 {
		t.Fatalf("n=0: %d", code)
	}
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNodesSeeEachOthersHeartbeats: two nodes on one NATS list each
// other with their health and stats; a node not heard for 15 s is gone.
func TestNodesSeeEachOthersHeartbeats(t *testing.T) {
	shared := nodetest.NewShared(t)
	a := nodetest.Start(t, shared.Config(node.Config{NodeID: "node-a", AdminToken: adminToken}))
	b := nodetest.Start(t, shared.Config(node.Config{NodeID: "node-b", AdminToken: adminToken}))
	for _, n := range []*nodetest.Node{a, b, a, b} { // a base, then a sample
		n.SampleView(time.Now())
	}
	var view console.NodesView
	waitUntil(t, func() bool {
		a.Heartbeat(time.Now())
		b.Heartbeat(time.Now())
		adminGet(t, a.APIURL, "/admin/v1/nodes", adminToken, &view)
		if len(view.Nodes) != 2 {
			return false
		}
		for _, nv := range view.Nodes {
			if nv.Health.Status != "ready" { // a node's first Redis check may not have run yet
				return false
			}
		}
		return true
	})
	if view.TTLMS != 15000 {
		t.Fatalf("ttl %d", view.TTLMS)
	}
	selves := 0
	for _, nv := range view.Nodes {
		if nv.Self {
			selves++
		}
		if nv.Health.Status != "ready" || nv.StartedAt.IsZero() || nv.Time.IsZero() || nv.AgeMS < 0 {
			t.Fatalf("node %+v", nv)
		}
	}
	if selves != 1 || !view.Nodes[0].Self || view.Nodes[0].Node != "node-a" || view.Nodes[1].Node != "node-b" || view.Nodes[1].Stats == nil {
		t.Fatalf("nodes %+v", view.Nodes)
	}
}

// TestOpenAPINodePaths: the operator endpoints the node serves itself are
// in keyapi/openapi.json, marked "x-served-by": "node", and answer.
func TestOpenAPINodePaths(t *testing.T) {
	raw, err := os.ReadFile("../keyapi/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range doc.Paths {
		if string(item["x-served-by"]) != `"node"` {
			continue
		}
		for method := range item {
			if method != "parameters" && !strings.HasPrefix(method, "x-") {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	n := nodetest.Start(t, node.Config{AdminToken: adminToken})
	routes := n.AdminRoutes()
	slices.Sort(documented)
	slices.Sort(routes)
	if !slices.Equal(documented, routes) {
		t.Fatalf("documented node paths %v, node routes %v", documented, routes)
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		req, _ := http.NewRequestWithContext(context.Background(), method, n.APIURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", r, resp.StatusCode)
		}
	}
}
