// Package keyapi serves the REST API of Floodgate's API keys (docs/rest.md):
// the wallet-signed account endpoints, the key status endpoint, the
// operator API under /admin/v1 with its audit log, and GET /openapi.json.
// The keys themselves (format, records, stores, keyring, usage, events)
// are package auth's; keyapi reaches them through Options (auth.Store,
// auth.Keyring, auth.Usage, auth.Notifier).
//
// # Main types
//
//   - Server (New, from Options): the http.Handler of docs/rest.md:
//     POST /api/v1/account/api_keys{,/create,/revoke} (signed by the
//     account's wallet: SignedRequest, SigningMessage),
//     GET /api/v1/api_keys/status, the operator API under /admin/v1 and
//     GET /openapi.json (openapi.json in this directory, embedded).
//   - OpenVerifier, FileVerifier, NATSVerifier (ParseAccountVerifier):
//     which wallets may create keys (AccountVerifier).
//   - AdminClient (NewAdminClient): a client of the operator API
//     (floodgate keys ..., the load generator, the test harnesses).
//   - The wire types of the API (Envelope, KeyView, CreateKeyRequest,
//     KeyPatch, KeyStatus, ...) and LiveUsage, which the node implements
//     to show a key's live budgets.
//
// # Admission
//
// The account endpoints (create, revoke, list) and the status endpoint
// take a per-IP budget of the limiter (Options.Limiter, with the node's
// ClientIP) before reading the body; the status endpoint also takes a
// per-key budget; unknown, malformed and revoked keys on the status
// endpoint are failed key attempts of the IP. A signature is accepted
// once (auth.Store.UseSignature) within its expiry_window, which is
// bounded by Options.MaxExpiryWindow (5 min). The account endpoints
// answer CORS preflights for Options.AllowedOrigins.
//
// # Audit log
//
// Every operator action on a key (create, change, activate, deactivate,
// revoke, rotate, delete) is written, with the admin token's id
// (TokenID), the client IP and the changed fields, to the store's
// auth.AuditLog (bbolt and Redis keep one; at most auth.MaxAudit
// entries) and read with GET /admin/v1/audit. A failed audit write is
// logged; it does not fail the action.
//
// # Concurrency
//
// Server, the verifiers and AdminClient are safe for concurrent use. The
// package starts no goroutine.
//
// # Hot path
//
// None: nothing here runs per websocket connection or per message. A
// request costs one or two store operations (a bbolt write is an fsync,
// a few ms, that completes before the response), plus one for the
// replay check of a signed request and one for the audit entry of an
// operator action; the NATS verifier adds one request/reply
// (DefaultVerifierTimeout at most).
package keyapi
