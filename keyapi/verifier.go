package keyapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mr-tron/base58"
	"github.com/nats-io/nats.go"
)

// AccountVerifier decides which wallets may create keys through the
// account endpoint (--account-verifier). It is asked once per signed
// create request, after the signature checks; keys that exist are never
// affected, nor is the operator API.
type AccountVerifier interface {
	// Allowed reports whether account may create a key. An error means no
	// answer could be had: the request gets 503 UNAVAILABLE.
	Allowed(ctx context.Context, account string) (bool, error)
}

// ErrVerifierUnavailable wraps every error of a verifier that could not
// answer.
var ErrVerifierUnavailable = errors.New("keyapi: account verifier unavailable")

// OpenVerifier allows every account: anyone with a wallet may create keys
// (the default; see docs/operations.md before using it in production).
type OpenVerifier struct{}

// Allowed implements AccountVerifier.
func (OpenVerifier) Allowed(context.Context, string) (bool, error) { return true, nil }

// FileVerifier allows the accounts listed in a file: one base58 wallet
// address per line; blank lines and lines starting with # are ignored.
// Reload re-reads it (the node calls it on SIGHUP).
type FileVerifier struct {
	// Immutable after NewFileVerifier
	path string

	// Guarded by mu
	mu  sync.RWMutex
	set map[string]struct{}
}

// NewFileVerifier reads the allow list at path; the error names the file
// and the first bad line.
func NewFileVerifier(path string) (*FileVerifier, error) {
	v := &FileVerifier{path: path}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the file. An unreadable or invalid file changes nothing
// and is returned.
func (v *FileVerifier) Reload() error {
	b, err := os.ReadFile(v.path)
	if err != nil {
		return fmt.Errorf("account verifier: %w", err)
	}
	set, err := parseAllowList(b)
	if err != nil {
		return fmt.Errorf("account verifier %s: %w", v.path, err)
	}
	v.mu.Lock()
	v.set = set
	v.mu.Unlock()
	return nil
}

// Len is the number of accounts allowed.
func (v *FileVerifier) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.set)
}

func parseAllowList(b []byte) (map[string]struct{}, error) {
	set := make(map[string]struct{})
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if pk, err := base58.Decode(s); err != nil || len(pk) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("line %d: %q is not a base58 ed25519 wallet address", line, s)
		}
		set[s] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return set, nil
}

// Allowed implements AccountVerifier.
func (v *FileVerifier) Allowed(_ context.Context, account string) (bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.set[account]
	return ok, nil
}

// DefaultVerifierTimeout bounds one question of a NATSVerifier.
const DefaultVerifierTimeout = time.Second

// NATSVerifier asks a service over NATS request/reply: the request is
// {"account":"<address>"}, the reply {"allowed":true|false}. No reply
// within the timeout, no responder or a malformed reply is an error (503
// UNAVAILABLE): the service decides, Floodgate never guesses.
type NATSVerifier struct {
	// Immutable after NewNATSVerifier
	nc      *nats.Conn
	subject string
	timeout time.Duration
}

// NewNATSVerifier returns a verifier asking on subject over nc (owned by
// the caller); timeout <= 0 means DefaultVerifierTimeout.
func NewNATSVerifier(nc *nats.Conn, subject string, timeout time.Duration) *NATSVerifier {
	if timeout <= 0 {
		timeout = DefaultVerifierTimeout
	}
	return &NATSVerifier{nc: nc, subject: subject, timeout: timeout}
}

// Allowed implements AccountVerifier.
func (v *NATSVerifier) Allowed(ctx context.Context, account string) (bool, error) {
	req, err := json.Marshal(struct {
		Account string `json:"account"`
	}{account})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	msg, err := v.nc.RequestWithContext(ctx, v.subject, req)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %w", ErrVerifierUnavailable, v.subject, err)
	}
	var rep struct {
		Allowed *bool `json:"allowed"`
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Allowed == nil {
		return false, fmt.Errorf("%w: %s: malformed reply %.64q", ErrVerifierUnavailable, v.subject, msg.Data)
	}
	return *rep.Allowed, nil
}

// ParseAccountVerifier builds the verifier of --account-verifier: "open"
// (or ""), "file:PATH" or "nats:SUBJECT" (nc must then be connected).
func ParseAccountVerifier(spec string, nc *nats.Conn) (AccountVerifier, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case spec == "" || spec == "open":
		return OpenVerifier{}, nil
	case kind == "file" && arg != "":
		return NewFileVerifier(arg)
	case kind == "nats" && arg != "":
		if nc == nil {
			return nil, fmt.Errorf("--account-verifier %s: needs a NATS connection (--nats-url)", spec)
		}
		if strings.ContainsAny(arg, " \t*>") {
			return nil, fmt.Errorf("--account-verifier %s: not a NATS subject", spec)
		}
		return NewNATSVerifier(nc, arg, 0), nil
	}
	return nil, fmt.Errorf("--account-verifier %q: want open, file:PATH or nats:SUBJECT", spec)
}
