package keyapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"floodgate/auth"
	"floodgate/internal/proto"
	"floodgate/limiter"

	"github.com/rs/zerolog"
)

// MaxBodyBytes bounds a REST request body.
const MaxBodyBytes = 64 << 10

//go:embed openapi.json
var openAPIDoc []byte

// Options configure New.
type Options struct {
	// Store holds the keys. Required.
	Store auth.Store
	// Keyring is the upgrade key cache of this process; it is invalidated
	// on every change and used to turn away bad keys on the status
	// endpoint. Optional.
	Keyring *auth.Keyring
	// Usage adds not yet flushed usage to the reported counts. Optional.
	Usage *auth.Usage
	// Notifier publishes control events (revoke, deactivate, expiry and
	// other changes). Optional: nil publishes nothing.
	Notifier auth.Notifier
	// LiveUsage reports live budget and quota use. Optional: nil means not
	// available (status reports the full budget).
	LiveUsage LiveUsage
	// AdminToken enables /admin/v1 with this bearer token. Defaults to
	// empty: /admin/v1 answers 404.
	AdminToken string
	// MaxActiveKeys per account. Defaults to 5.
	MaxActiveKeys int
	// DefaultCreditsPerMinute is the key tier's credit budget, reported by
	// the status endpoint for keys without their own. Defaults to 300.
	DefaultCreditsPerMinute int
	// Limiter holds the per-IP budgets of the account endpoints
	// (limiter.APIAccount) and of the status endpoint (limiter.APIStatus)
	// and the failed-key IP block: unknown, malformed and revoked keys on
	// the status endpoint are failed attempts of the IP. Optional: nil
	// means no budgets and no block (tests, embedding); the node sets it.
	Limiter *limiter.Limiter
	// ClientIP is the client address of a request (the node's one rule,
	// trusted proxies included); it also decides a key's allowed_cidrs
	// on the status endpoint. Required with Limiter; defaults to the
	// socket peer's address otherwise.
	ClientIP func(*http.Request) netip.Addr
	// DefaultExpiry sets expires_at = now + DefaultExpiry on keys created
	// without one (operator and account create; not rotate, which keeps
	// the old key's). Defaults to 0: never.
	DefaultExpiry time.Duration
	// Verifier decides which accounts may create keys on the account
	// endpoint (403 ACCOUNT_NOT_ALLOWED otherwise). Defaults to
	// OpenVerifier: every account.
	Verifier AccountVerifier
	// AllowedOrigins are the browser origins (host patterns, as
	// --allowed-origins) the account endpoints answer CORS preflights
	// for; a request from another cross-origin page is refused with 403
	// ORIGIN_NOT_ALLOWED. Nothing else is CORS-enabled. Defaults to none.
	AllowedOrigins []string
	// MaxExpiryWindow bounds the expiry_window of a signed request (400
	// EXPIRY_WINDOW_TOO_LONG above it), and so how long its signature is
	// remembered. Defaults to DefaultMaxExpiryWindow (5 minutes).
	MaxExpiryWindow time.Duration
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// Rand is the key randomness. Defaults to crypto/rand.Reader.
	Rand io.Reader
	// Logger receives store and publish failures (never a key). Defaults
	// to a no-op logger.
	Logger *zerolog.Logger
}

// Server is the REST API of docs/rest.md as an http.Handler: account
// endpoints, key status, the operator API and /openapi.json. It does not
// serve /healthz, /readyz or /metrics. Safe for concurrent use; each
// request costs one or two store operations (a write is an fsync on
// bbolt).
type Server struct {
	// Immutable after New
	opts      Options
	log       zerolog.Logger
	mux       *http.ServeMux
	routes    []route
	adminHash [32]byte
}

type route struct {
	method, pattern string
	admin           bool
	h               http.HandlerFunc
}

// New returns the REST handler.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("keyapi: Options.Store is required")
	}
	if opts.MaxActiveKeys <= 0 {
		opts.MaxActiveKeys = 5
	}
	if opts.DefaultCreditsPerMinute <= 0 {
		opts.DefaultCreditsPerMinute = 300
	}
	if opts.Limiter != nil && opts.ClientIP == nil {
		return nil, errors.New("keyapi: Options.ClientIP is required with Options.Limiter")
	}
	if opts.ClientIP == nil {
		opts.ClientIP = peerIP
	}
	if opts.Verifier == nil {
		opts.Verifier = OpenVerifier{}
	}
	if opts.MaxExpiryWindow <= 0 {
		opts.MaxExpiryWindow = DefaultMaxExpiryWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	s := &Server{opts: opts, log: zerolog.Nop()}
	if opts.Logger != nil {
		s.log = *opts.Logger
	}
	s.adminHash = sha256.Sum256([]byte(opts.AdminToken))
	s.routes = []route{
		{"POST", "/api/v1/account/api_keys/create", false, s.account(s.handleAccountCreate)},
		{"OPTIONS", "/api/v1/account/api_keys/create", false, s.handlePreflight},
		{"POST", "/api/v1/account/api_keys/revoke", false, s.account(s.handleAccountRevoke)},
		{"OPTIONS", "/api/v1/account/api_keys/revoke", false, s.handlePreflight},
		{"POST", "/api/v1/account/api_keys", false, s.account(s.handleAccountList)},
		{"OPTIONS", "/api/v1/account/api_keys", false, s.handlePreflight},
		{"GET", "/api/v1/api_keys/status", false, s.handleStatus},
		{"POST", "/admin/v1/keys", true, s.audited(s.handleAdminCreate)},
		{"GET", "/admin/v1/keys", true, s.handleAdminList},
		{"GET", "/admin/v1/keys/{prefix}", true, s.handleAdminShow},
		{"PATCH", "/admin/v1/keys/{prefix}", true, s.audited(s.handleAdminPatch)},
		{"DELETE", "/admin/v1/keys/{prefix}", true, s.audited(s.handleAdminDelete)},
		{"POST", "/admin/v1/keys/{prefix}/rotate", true, s.audited(s.handleAdminRotate)},
		{"GET", "/admin/v1/keys/{prefix}/events", true, s.handleAdminEvents},
		{"GET", "/admin/v1/audit", true, s.handleAdminAudit}, // audit.go
		{"GET", "/openapi.json", false, s.handleOpenAPI},
	}
	s.mux = http.NewServeMux()
	byPattern := map[string][]route{}
	var order []string
	for _, r := range s.routes {
		if byPattern[r.pattern] == nil {
			order = append(order, r.pattern)
		}
		byPattern[r.pattern] = append(byPattern[r.pattern], r)
	}
	for _, p := range order {
		s.mux.Handle(p, s.dispatch(byPattern[p]))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Not found")
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// dispatch picks the route of the request method among those of one path.
func (s *Server) dispatch(routes []route) http.Handler {
	allow := make([]string, len(routes))
	for i, rt := range routes {
		allow[i] = rt.method
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if routes[0].admin && !s.adminOK(w, r) {
			return
		}
		for _, rt := range routes {
			if rt.method == r.Method {
				rt.h(w, r)
				return
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method not allowed")
	})
}

// adminOK answers 404 when the admin API is off and 401 on a wrong token.
func (s *Server) adminOK(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.AdminToken == "" {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Not found")
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	h := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(h[:], s.adminHash[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate admin"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "Invalid admin token")
		return false
	}
	return true
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPIDoc)
}

// writeData answers with a success envelope.
func writeData(w http.ResponseWriter, status int, data any) {
	raw, err := json.Marshal(data)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "Internal error")
		return
	}
	writeEnvelope(w, status, Envelope{Success: true, Data: raw})
}

// writeError answers with a failure envelope.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeEnvelope(w, status, Envelope{Data: json.RawMessage("null"), Error: &msg, Code: &code})
}

func writeEnvelope(w http.ResponseWriter, status int, env Envelope) {
	b, _ := json.Marshal(env)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// apiError is an error with its HTTP answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

var (
	errBodyTooLarge = &apiError{http.StatusBadRequest, "BAD_REQUEST", fmt.Sprintf("Request body too large (max %d bytes)", MaxBodyBytes)}
	errNotFound     = &apiError{http.StatusNotFound, "API_KEY_NOT_FOUND", "API key not found"}
)

// peerIP is the request's socket peer address (the zero Addr when
// RemoteAddr is not an address).
func peerIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// fail answers err: an *apiError as is, a known sentinel with its status
// and message, anything else as a logged 500.
func (s *Server) fail(w http.ResponseWriter, err error) {
	var ae *apiError
	var fe *auth.FieldError
	switch {
	case errors.As(err, &ae):
		writeError(w, ae.status, ae.code, ae.msg)
	case errors.As(err, &fe):
		if fe.Problem == "missing" {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Missing required field: "+fe.Field)
		} else {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid field "+fe.Field+": "+fe.Problem)
		}
	case errors.Is(err, ErrBadJSON):
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid JSON body")
	case errors.Is(err, ErrInvalidPublicKey):
		writeError(w, http.StatusBadRequest, "INVALID_PUBLIC_KEY", "Invalid public key")
	case errors.Is(err, ErrInvalidSignature):
		writeError(w, http.StatusBadRequest, "INVALID_SIGNATURE", "Invalid signature")
	case errors.Is(err, ErrInvalidMessage):
		writeError(w, http.StatusBadRequest, "INVALID_MESSAGE", "Invalid message")
	case errors.Is(err, ErrSignatureReplayed):
		writeError(w, http.StatusBadRequest, "SIGNATURE_REPLAYED", "Signature replayed")
	case errors.Is(err, ErrExpiryWindowTooLong):
		writeError(w, http.StatusBadRequest, "EXPIRY_WINDOW_TOO_LONG",
			fmt.Sprintf("expiry_window too long (max %d ms)", s.opts.MaxExpiryWindow.Milliseconds()))
	case errors.Is(err, ErrVerifierUnavailable):
		s.log.Warn().Err(err).Msg("keyapi: account verifier unavailable")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "account verifier unavailable, retry")
	case errors.Is(err, auth.ErrTooManyKeys):
		writeError(w, http.StatusConflict, "TOO_MANY_KEYS", fmt.Sprintf("Too many active API keys (limit %d)", s.opts.MaxActiveKeys))
	case errors.Is(err, auth.ErrAliasTaken):
		writeError(w, http.StatusConflict, "ALIAS_TAKEN", "Alias already in use for this account")
	case errors.Is(err, auth.ErrKeyInUse):
		writeError(w, http.StatusConflict, "KEY_IN_USE", "key has usage history; deactivate it")
	case errors.Is(err, auth.ErrRevoked):
		writeError(w, http.StatusConflict, "KEY_REVOKED", "API key is revoked")
	case errors.Is(err, auth.ErrNotFound):
		writeError(w, errNotFound.status, errNotFound.code, errNotFound.msg)
	case unavailable(err):
		s.log.Warn().Err(err).Msg("keyapi: key store unavailable")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "key store unavailable, retry")
	default:
		s.log.Error().Err(err).Msg("keyapi: sidecar request failed")
		writeError(w, http.StatusInternalServerError, "INTERNAL", "Internal error")
	}
}

// writeRefusal answers a limiter refusal (429 RATE_LIMITED, 403
// IP_BLOCKED) in the REST envelope, with its Retry-After and RateLimit
// fields.
func writeRefusal(w http.ResponseWriter, ref *proto.Refusal) {
	ref.SetHeaders(w.Header())
	writeError(w, ref.Status, ref.Code, ref.Message)
}

// unavailable reports whether err means the store could not be reached
// (a network error, a timeout, a connection cut mid-reply), as opposed to
// a bug.
func unavailable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readBody reads at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errBodyTooLarge
	}
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "BAD_REQUEST", "Invalid JSON body"}
	}
	return b, nil
}

// decodeBody reads a JSON object into v, naming a mistyped field. An
// empty body is allowed when emptyOK (all fields optional).
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	if emptyOK && len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	trim := strings.TrimSpace(string(b))
	if !strings.HasPrefix(trim, "{") {
		return ErrBadJSON
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &auth.FieldError{Field: te.Field, Problem: "must be " + jsonTypeName(te.Type.String())}
		}
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return &auth.FieldError{Field: "expires_at", Problem: "must be an RFC 3339 time"}
		}
		return ErrBadJSON
	}
	return nil
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "a list"
	case strings.Contains(goType, "int"):
		return "an integer"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.Contains(goType, "string"), strings.Contains(goType, "Status"):
		return "a string"
	case strings.Contains(goType, "Time"):
		return "an RFC 3339 time"
	}
	return "an object"
}

// notify publishes ev and invalidates the local cache; a publish failure
// is logged (the change itself is stored).
func (s *Server) notify(r *http.Request, ev auth.KeyEvent) {
	if s.opts.Keyring != nil {
		s.opts.Keyring.Invalidate(ev.Prefix)
	}
	if s.opts.Notifier == nil {
		return
	}
	if err := s.opts.Notifier.Notify(r.Context(), ev); err != nil {
		s.log.Error().Err(err).Str("prefix", ev.Prefix).Str("event", string(ev.Type)).Msg("keyapi: key event not published")
	}
}

// usage returns the stored usage of rec plus what is pending in memory.
func (s *Server) usage(rec *auth.Record) (count int64, last time.Time) {
	count, last = rec.RequestCount, rec.LastUsedAt
	if s.opts.Usage != nil {
		n, l := s.opts.Usage.Pending(rec.Prefix)
		count += n
		if l.After(last) {
			last = l
		}
	}
	return count, last
}

// metered returns the stored metered usage of rec today (the UTC day of
// now) and in total, plus what is pending in memory.
func (s *Server) metered(rec *auth.Record, now time.Time) (today, total auth.UsageCounters) {
	today, total = rec.Today(now), rec.UsageTotal
	if s.opts.Usage != nil {
		p := s.opts.Usage.PendingMetered(rec.Prefix)
		today.Add(p)
		total.Add(p)
	}
	return today, total
}

func (s *Server) view(rec *auth.Record, now time.Time) KeyView {
	count, last := s.usage(rec)
	today, total := s.metered(rec, now)
	return KeyView{
		Prefix: rec.Prefix, Account: rec.Account, Alias: rec.Alias, Category: rec.Category,
		Status: rec.EffectiveStatus(now), CreatedAt: rec.CreatedAt.UTC(),
		ExpiresAt: timePtr(rec.ExpiresAt), LastUsedAt: timePtr(last), RevokedAt: timePtr(rec.RevokedAt), RequestCount: count,
		Limits: rec.Limits, Quotas: rec.Quotas, Scopes: rec.Scopes.Names(), AllowedCIDRs: rec.AllowedCIDRs.List(),
		UsageToday: today, UsageTotal: total,
	}
}

// newKey generates a key and stores rec under its prefix, retrying on the
// (astronomically rare) prefix collision.
func (s *Server) newKey(r *http.Request, rec auth.Record) (string, auth.Record, error) {
	for i := 0; ; i++ {
		key, prefix, err := auth.Generate(s.opts.Rand)
		if err != nil {
			return "", auth.Record{}, err
		}
		rec.Prefix, rec.Hash = prefix, auth.Hash(key)
		err = s.opts.Store.Create(r.Context(), rec, s.opts.MaxActiveKeys)
		if errors.Is(err, auth.ErrExists) && i < 3 {
			continue
		}
		return key, rec, err
	}
}
