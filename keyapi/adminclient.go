package keyapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"floodgate/auth"
)

// APIError is a failure answer of the REST API.
type APIError struct {
	Status  int    // HTTP status
	Code    string // envelope code, e.g. "API_KEY_NOT_FOUND"
	Message string // envelope error
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

// AdminClient calls the operator API (/admin/v1) of a sidecar. Safe for
// concurrent use.
type AdminClient struct {
	// Immutable after NewAdminClient
	base  string
	token string
	hc    *http.Client
}

// NewAdminClient returns a client of the sidecar at baseURL (e.g.
// "http://127.0.0.1:8081") with the admin bearer token. hc defaults to a
// client with a 30 s timeout.
func NewAdminClient(baseURL, token string, hc *http.Client) *AdminClient {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &AdminClient{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// do sends one request and decodes the envelope's data into out.
func (c *AdminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return &APIError{Status: resp.StatusCode, Code: "BAD_RESPONSE", Message: "not a Floodgate API response: " + strings.TrimSpace(string(raw[:min(len(raw), 200)]))}
	}
	if !env.Success {
		e := &APIError{Status: resp.StatusCode}
		if env.Code != nil {
			e.Code = *env.Code
		}
		if env.Error != nil {
			e.Message = *env.Error
		}
		return e
	}
	if out != nil {
		return json.Unmarshal(env.Data, out)
	}
	return nil
}

func keyPath(prefix string) string { return "/admin/v1/keys/" + url.PathEscape(prefix) }

// CreateKey creates a key; the result holds the full key, shown once.
func (c *AdminClient) CreateKey(ctx context.Context, req CreateKeyRequest) (CreatedKey, error) {
	var out CreatedKey
	err := c.do(ctx, http.MethodPost, "/admin/v1/keys", req, &out)
	return out, err
}

// ListKeys lists keys, following the pages to the end; empty arguments
// match everything. status is active, inactive, revoked or expired.
func (c *AdminClient) ListKeys(ctx context.Context, account, category, status string) ([]KeyView, error) {
	var all []KeyView
	cursor := ""
	for {
		page, next, err := c.ListPage(ctx, account, category, status, auth.MaxPageLimit, cursor)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// ListPage lists one page of up to limit keys (the server default when
// limit <= 0) from cursor ("" for the first page), and returns the cursor
// of the next page ("" after the last).
func (c *AdminClient) ListPage(ctx context.Context, account, category, status string, limit int, cursor string) ([]KeyView, string, error) {
	q := url.Values{}
	for k, v := range map[string]string{"account": account, "category": category, "status": status, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/admin/v1/keys"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out KeyList
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, "", err
	}
	next := ""
	if out.NextCursor != nil {
		next = *out.NextCursor
	}
	return out.Keys, next, nil
}

// GetKey returns one key with its live use.
func (c *AdminClient) GetKey(ctx context.Context, prefix string) (KeyView, error) {
	var out KeyView
	err := c.do(ctx, http.MethodGet, keyPath(prefix), nil, &out)
	return out, err
}

// PatchKey changes a key.
func (c *AdminClient) PatchKey(ctx context.Context, prefix string, p KeyPatch) (KeyView, error) {
	var out KeyView
	err := c.do(ctx, http.MethodPatch, keyPath(prefix), p, &out)
	return out, err
}

// DeleteKey deletes a key that was never used.
func (c *AdminClient) DeleteKey(ctx context.Context, prefix string) error {
	return c.do(ctx, http.MethodDelete, keyPath(prefix), nil, nil)
}

// RotateKey creates a new key with the settings of prefix (which stays
// active) and the given alias.
func (c *AdminClient) RotateKey(ctx context.Context, prefix, alias string) (CreatedKey, error) {
	var out CreatedKey
	err := c.do(ctx, http.MethodPost, keyPath(prefix)+"/rotate", RotateRequest{Alias: alias}, &out)
	return out, err
}

// KeyEvents returns up to limit of the latest connection events of a key,
// newest last; limit <= 0 means the server default (100).
func (c *AdminClient) KeyEvents(ctx context.Context, prefix string, limit int) ([]auth.Event, error) {
	path := keyPath(prefix) + "/events"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out KeyEvents
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Events, err
}
