package keyapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"floodgate/auth"
	"floodgate/keyapi"
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
	acct := newWallet(1).Account
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

// TestOpenAPISchemasMatchTheWireTypes: every JSON field of the API's wire
// types is a property of its schema in openapi.json, and every property of
// those schemas is a field: a field added to a type without its
// documentation (or left documented after removal) fails here.
func TestOpenAPISchemasMatchTheWireTypes(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for schema, v := range map[string]any{
		"KeyView": keyapi.KeyView{}, "CreateKeyRequest": keyapi.CreateKeyRequest{}, "KeyPatch": keyapi.KeyPatch{},
		"CreatedKey": keyapi.CreatedKey{}, "KeyStatus": keyapi.KeyStatus{}, "KeyUsage": keyapi.KeyUsage{},
		"QuotaUsage": keyapi.QuotaUsage{}, "KeyList": keyapi.KeyList{}, "UsageCounters": auth.UsageCounters{},
		"Limits": auth.Limits{}, "Quotas": auth.Quotas{},
	} {
		props := doc.Components.Schemas[schema].Properties
		if props == nil {
			t.Errorf("openapi.json has no schema %s", schema)
			continue
		}
		fields := map[string]bool{}
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = true
			if _, ok := props[name]; !ok {
				t.Errorf("%s.%s (json %q) is not documented in openapi.json schema %s", rt.Name(), rt.Field(i).Name, name, schema)
			}
		}
		for name := range props {
			if !fields[name] {
				t.Errorf("openapi.json schema %s documents %q, which %s does not have", schema, name, rt.Name())
			}
		}
	}
}
