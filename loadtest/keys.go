package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"floodgate/auth"
	"floodgate/keyapi"

	"github.com/mr-tron/base58"
)

// keysPerAccount is how many active keys the sidecar allows per account
// (docs/rest.md): CreateKeys makes a fresh account for every five keys.
const keysPerAccount = 5

// KeyOptions configure CreateKeys.
type KeyOptions struct {
	// AdminURL is the sidecar's base URL. (--api-url) Defaults to
	// "http://127.0.0.1:8081".
	AdminURL string

	// AdminToken is the operator API's bearer token. (--admin-token)
	// Required.
	AdminToken string

	// N is the number of keys to create. (--create-keys) Required.
	N int

	// Limits, when not nil, are every key's own limits (e.g.
	// CreditsPerMinute). Defaults to nil: the key tier's.
	Limits *auth.Limits

	// Alias prefixes each key's alias, followed by its index. Defaults to
	// "floodgate-load-".
	Alias string

	// Concurrency bounds the requests in flight. Defaults to 8.
	Concurrency int

	// HTTPClient makes the requests. Defaults to a client with a 30 s
	// timeout.
	HTTPClient *http.Client
}

// CreateKeys creates o.N keys through the operator API (POST
// /admin/v1/keys), five per freshly generated ed25519 account, and returns
// the full keys in order. On error it returns the keys made so far (not in
// order) and the first error.
func CreateKeys(ctx context.Context, o KeyOptions) ([]string, error) {
	if o.AdminURL == "" {
		o.AdminURL = "http://127.0.0.1:8081"
	}
	if o.Alias == "" {
		o.Alias = "floodgate-load-"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.N <= 0 || o.AdminToken == "" {
		return nil, fmt.Errorf("%w: creating keys needs a count and an admin token", ErrConfig)
	}
	accounts := make([]string, (o.N+keysPerAccount-1)/keysPerAccount)
	for i := range accounts {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		accounts[i] = base58.Encode(pub)
	}
	admin := keyapi.NewAdminClient(o.AdminURL, o.AdminToken, o.HTTPClient)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make([]string, o.N)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, o.Concurrency)
	for i := range o.N {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			k, err := admin.CreateKey(ctx, keyapi.CreateKeyRequest{
				Account: accounts[i/keysPerAccount], Alias: o.Alias + strconv.Itoa(i), Limits: o.Limits,
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("loadtest: create key %d of %d: %w", i+1, o.N, err)
					cancel()
				}
				mu.Unlock()
				return
			}
			keys[i] = k.APIKey
		}()
	}
	wg.Wait()
	if firstErr != nil {
		made := keys[:0:0]
		for _, k := range keys {
			if k != "" {
				made = append(made, k)
			}
		}
		return made, firstErr
	}
	return keys, nil
}
