package procnode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"floodgate/keyapi"
)

// Admin sends an HTTP request to n's operator API with the suite's admin
// token (body, unless nil, as JSON) and decodes the envelope.
func (n *Node) Admin(method, path string, body any) (int, keyapi.Envelope, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, keyapi.Envelope{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.apiURL+path, rd)
	if err != nil {
		return 0, keyapi.Envelope{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.suite.opts.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.suite.http.Do(req)
	if err != nil {
		return 0, keyapi.Envelope{}, err
	}
	defer resp.Body.Close()
	var env keyapi.Envelope
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return resp.StatusCode, env, fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return resp.StatusCode, env, nil
}

// CreateKey creates a key for account through n (limits nil: the tier's)
// and fails t when it cannot.
func (n *Node) CreateKey(t *testing.T, account string, limits map[string]any) keyapi.CreatedKey {
	t.Helper()
	k, status, err := n.TryCreateKey(account, limits)
	if err != nil {
		t.Fatalf("create key on %s: %d %v", n.id, status, err)
	}
	return k
}

// TryCreateKey is CreateKey returning the HTTP status and the failure.
func (n *Node) TryCreateKey(account string, limits map[string]any) (keyapi.CreatedKey, int, error) {
	body := map[string]any{"account": account}
	if limits != nil {
		body["limits"] = limits
	}
	status, env, err := n.Admin("POST", "/admin/v1/keys", body)
	if err != nil {
		return keyapi.CreatedKey{}, status, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return keyapi.CreatedKey{}, status, fmt.Errorf("HTTP %d %s", status, env.Data)
	}
	var k keyapi.CreatedKey
	if err := json.Unmarshal(env.Data, &k); err != nil || k.APIKey == "" || k.Key.Prefix == "" {
		return keyapi.CreatedKey{}, status, fmt.Errorf("data %s: %v", env.Data, err)
	}
	return k, status, nil
}

// Readiness is one /readyz answer.
type Readiness struct {
	Status  int      // HTTP status; 0 on a transport error
	Reasons []string // why the node is not ready
}

// Has reports whether reason is among r's reasons.
func (r Readiness) Has(reason string) bool {
	for _, x := range r.Reasons {
		if x == reason {
			return true
		}
	}
	return false
}

// Ready asks n's /readyz.
func (n *Node) Ready() Readiness {
	resp, err := n.suite.http.Get(n.apiURL + "/readyz")
	if err != nil {
		return Readiness{}
	}
	defer resp.Body.Close()
	var body struct {
		Reasons []string `json:"reasons"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return Readiness{Status: resp.StatusCode, Reasons: body.Reasons}
}

// Metric returns the value of the sample named exactly name (with its
// labels, if any) on n's /metrics, and whether it was there.
func (n *Node) Metric(name string) (float64, bool) {
	resp, err := n.suite.http.Get(n.apiURL + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}
