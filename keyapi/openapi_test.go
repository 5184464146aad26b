package keyapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"testing"
)

func TestOpenAPI(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do("GET", "/openapi.json", nil, nil)
	onDisk, _ := os.ReadFile("openapi.json")
	if r.status != 200 || r.raw != string(onDisk) {
		t.Fatalf("GET /openapi.json: %d, %d bytes (file %d)", r.status, len(r.raw), len(onDisk))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	// Paths the node serves itself ("x-served-by": "node") are checked
	// against the node's mux by node's TestOpenAPINodePaths.
	if err := json.Unmarshal(onDisk, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	var ops []string
	for path, item := range doc.Paths {
		if string(item["x-served-by"]) == `"node"` {
			continue
		}
		for method := range item {
			if method == "parameters" || strings.HasPrefix(method, "x-") {
				continue
			}
			op := strings.ToUpper(method) + " " + path
			documented[op] = true
			ops = append(ops, op)
		}
	}
	sort.Strings(ops)
	// Every handler route is documented...
	for _, rt := range f.h.Routes() {
		if op := rt[0] + " " + rt[1]; !documented[op] {
			t.Errorf("route %s is not in openapi.json", op)
		}
	}
	// ...and every documented operation answers (not 404/405), with a
	// fresh key for the {prefix} operations.
	acct := newWallet(1).account
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		if strings.Contains(path, "{prefix}") {
			ck := f.adminCreate(`{"account":"` + acct + `","active":false}`)
			path = strings.ReplaceAll(path, "{prefix}", ck.Key.Prefix)
		}
		if method == "OPTIONS" { // a preflight answers 204 without a body
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
			if rec.Code != 204 {
				t.Errorf("%s: %d", op, rec.Code)
			}
			continue
		}
		var body any
		if method == "PATCH" || method == "POST" {
			body = `{}`
		}
		r := f.admin(method, path, body)
		if r.status == 404 || r.status == 405 {
			t.Errorf("%s: %d %s", op, r.status, r.raw)
		}
	}
	if len(ops) != len(f.h.Routes()) {
		t.Errorf("%d documented operations, %d routes", len(ops), len(f.h.Routes()))
	}
}
