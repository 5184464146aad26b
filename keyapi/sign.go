package keyapi

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"floodgate/auth"

	"github.com/mr-tron/base58"
)

// Signature errors; the REST sidecar answers each with 400 and the message
// in parentheses.
var (
	ErrBadJSON           = errors.New("keyapi: request body is not a JSON object")  // "Invalid JSON body"
	ErrInvalidPublicKey  = errors.New("keyapi: invalid public key")                 // "Invalid public key"
	ErrInvalidSignature  = errors.New("keyapi: invalid signature")                  // "Invalid signature"
	ErrInvalidMessage    = errors.New("keyapi: message expired or from the future") // "Invalid message"
	ErrSignatureReplayed = errors.New("keyapi: signature replayed")                 // "Signature replayed"
	// ErrExpiryWindowTooLong: expiry_window above the API's
	// MaxExpiryWindow ("expiry_window too long (max N ms)").
	ErrExpiryWindowTooLong = errors.New("keyapi: expiry_window too long")
)

// Defaults of the signed-request checks.
const (
	// DefaultExpiryWindow applies when a request has no expiry_window.
	DefaultExpiryWindow = 30 * time.Second
	// MaxFutureSkew is how far in the future a timestamp may be.
	MaxFutureSkew = 5 * time.Second
	// DefaultMaxExpiryWindow is the longest expiry_window accepted unless
	// Options.MaxExpiryWindow says otherwise. A signature is remembered
	// (replay protection) until its window ends, so this also bounds the
	// replay cache: at most the rate of signed requests times the window.
	DefaultMaxExpiryWindow = 5 * time.Minute
)

// SignedRequest is a parsed wallet-signed request body (docs/rest.md): the
// envelope fields, and the payload fields of its type.
type SignedRequest struct {
	Type         string         // the signed "type", e.g. "create_api_key"
	Account      string         // base58 ed25519 public key
	AgentWallet  string         // "" when null or absent
	Signature    string         // base58 ed25519 signature, as sent
	Timestamp    int64          // ms since the epoch
	ExpiryWindow int64          // ms; DefaultExpiryWindow when absent
	Payload      map[string]any // the type's payload fields, decoded with json.Number
	// Fields is every top-level field of the body (decoded with
	// json.Number), signed or not: the list endpoint reads its page
	// (limit, cursor) here.
	Fields map[string]any

	// Decoded by ParseSignedRequest
	PublicKey ed25519.PublicKey
	Sig       []byte
}

// ParseSignedRequest parses body as a signed request of type typ whose
// payload is made of the top-level fields named in payloadFields (all
// required; any other field is ignored). Errors: ErrBadJSON, a *FieldError
// naming a missing or mistyped field, ErrInvalidPublicKey,
// ErrInvalidSignature. It does not verify the signature: see Verify.
func ParseSignedRequest(body []byte, typ string, payloadFields ...string) (*SignedRequest, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, ErrBadJSON
	}
	if _, err := dec.Token(); err == nil {
		return nil, ErrBadJSON // trailing data
	}
	r := &SignedRequest{Type: typ, ExpiryWindow: DefaultExpiryWindow.Milliseconds(), Fields: m}
	var err error
	if r.Account, err = stringField(m, "account"); err != nil {
		return nil, err
	}
	if r.Signature, err = stringField(m, "signature"); err != nil {
		return nil, err
	}
	if r.Timestamp, err = intField(m, "timestamp"); err != nil {
		return nil, err
	}
	if _, ok := m["expiry_window"]; ok && m["expiry_window"] != nil {
		if r.ExpiryWindow, err = intField(m, "expiry_window"); err != nil {
			return nil, err
		}
		if r.ExpiryWindow <= 0 {
			return nil, &auth.FieldError{Field: "expiry_window", Problem: "must be positive"}
		}
	}
	switch aw := m["agent_wallet"].(type) {
	case nil:
	case string:
		r.AgentWallet = aw
	default:
		return nil, &auth.FieldError{Field: "agent_wallet", Problem: "must be a string or null"}
	}
	r.Payload = make(map[string]any, len(payloadFields))
	for _, f := range payloadFields {
		v, ok := m[f]
		if !ok {
			return nil, &auth.FieldError{Field: f, Problem: "missing"}
		}
		r.Payload[f] = v
	}
	pk, err := base58.Decode(r.Account)
	if err != nil || len(pk) != ed25519.PublicKeySize {
		return nil, ErrInvalidPublicKey
	}
	r.PublicKey = ed25519.PublicKey(pk)
	if r.Sig, err = ParseSignature(r.Signature); err != nil {
		return nil, err
	}
	return r, nil
}

// ParseSignature decodes a base58 ed25519 signature (ErrInvalidSignature).
func ParseSignature(s string) ([]byte, error) {
	sig, err := base58.Decode(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, ErrInvalidSignature
	}
	return sig, nil
}

func stringField(m map[string]any, name string) (string, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return "", &auth.FieldError{Field: name, Problem: "missing"}
	}
	s, ok := v.(string)
	if !ok {
		return "", &auth.FieldError{Field: name, Problem: "must be a string"}
	}
	return s, nil
}

func intField(m map[string]any, name string) (int64, error) {
	v, ok := m[name]
	if !ok || v == nil {
		return 0, &auth.FieldError{Field: name, Problem: "missing"}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, &auth.FieldError{Field: name, Problem: "must be an integer"}
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, &auth.FieldError{Field: name, Problem: "must be an integer"}
	}
	return i, nil
}

// Message returns the exact bytes the client signed.
func (r *SignedRequest) Message() []byte {
	msg, err := SigningMessage(r.Type, r.Payload, r.Timestamp, r.ExpiryWindow)
	if err != nil {
		// Payload values come from the JSON decoder, which the builder
		// always accepts.
		panic(err)
	}
	return msg
}

// Verify checks the signature over Message with PublicKey
// (ErrInvalidSignature).
func (r *SignedRequest) Verify() error {
	if !ed25519.Verify(r.PublicKey, r.Message(), r.Sig) {
		return ErrInvalidSignature
	}
	return nil
}

// CheckTime refuses (ErrInvalidMessage) a request whose window ended
// before now or whose timestamp is more than maxFuture ahead of now.
func (r *SignedRequest) CheckTime(now time.Time, maxFuture time.Duration) error {
	ms := now.UnixMilli()
	if r.Timestamp > ms+maxFuture.Milliseconds() || r.Timestamp+r.ExpiryWindow < ms {
		return ErrInvalidMessage
	}
	return nil
}

// ReplayKey is the signature in canonical base58, the key under which it
// is remembered, and Until the time after which it is refused anyway.
func (r *SignedRequest) ReplayKey() (key string, until time.Time) {
	return base58.Encode(r.Sig), time.UnixMilli(r.Timestamp + r.ExpiryWindow)
}

// VerifyMessage verifies a base58 signature of msg by a base58 ed25519
// public key.
func VerifyMessage(account, signature string, msg []byte) error {
	pk, err := base58.Decode(account)
	if err != nil || len(pk) != ed25519.PublicKeySize {
		return ErrInvalidPublicKey
	}
	sig, err := ParseSignature(signature)
	if err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(pk), msg, sig) {
		return ErrInvalidSignature
	}
	return nil
}

// SigningMessage builds the message a Pacifica client signs:
// {"data":<payload>,"expiry_window":<n>,"timestamp":<t>,"type":"<type>"}
// in canonical JSON (see AppendCanonicalJSON).
func SigningMessage(typ string, payload any, timestamp, expiryWindow int64) ([]byte, error) {
	if payload == nil {
		payload = map[string]any{}
	}
	return AppendCanonicalJSON(nil, map[string]any{
		"data":          payload,
		"expiry_window": expiryWindow,
		"timestamp":     timestamp,
		"type":          typ,
	})
}

// SignRequest is the client side of SigningMessage: the body of a
// wallet-signed account request of typ, signed with priv as the Pacifica
// SDK signs it, with the payload's fields at the top level:
// {"account","agent_wallet":null,"signature","timestamp","expiry_window",
// ...payload}. For Go clients and tests; timestamp and expiryWindow are in
// milliseconds.
func SignRequest(priv ed25519.PrivateKey, typ string, payload map[string]any, timestamp, expiryWindow int64) (map[string]any, error) {
	if payload == nil {
		payload = map[string]any{} // signed as {}, like the SDK's empty payload
	}
	msg, err := SigningMessage(typ, payload, timestamp, expiryWindow)
	if err != nil {
		return nil, err
	}
	b := map[string]any{
		"account":       base58.Encode(priv.Public().(ed25519.PublicKey)),
		"agent_wallet":  nil,
		"signature":     base58.Encode(ed25519.Sign(priv, msg)),
		"timestamp":     timestamp,
		"expiry_window": expiryWindow,
	}
	for k, v := range payload {
		b[k] = v
	}
	return b, nil
}

// AppendCanonicalJSON appends v as Python's
// json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
// would write it: object keys sorted by code point at every level, no
// spaces, every character outside printable ASCII escaped as \uXXXX
// (lowercase hex, surrogate pairs above U+FFFF). v is made of
// map[string]any, []any, string, json.Number (written verbatim), bool, nil,
// int and int64.
func AppendCanonicalJSON(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendPyString(dst, x), nil
	case json.Number:
		if !json.Valid([]byte(x)) {
			return nil, fmt.Errorf("keyapi: canonical json: bad number %q", string(x))
		}
		return append(dst, x...), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendCanonicalJSON(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // UTF-8 byte order is code point order
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendPyString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = AppendCanonicalJSON(dst, x[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("keyapi: canonical json: unsupported type %T", v)
}

// appendPyString writes s as Python's json.dumps with ensure_ascii=True.
// Invalid UTF-8 is written as U+FFFD, as Go's JSON decoder would have
// decoded it.
func appendPyString(dst []byte, s string) []byte {
	const hexdig = "0123456789abcdef"
	u4 := func(dst []byte, r rune) []byte {
		return append(dst, '\\', 'u', hexdig[r>>12&15], hexdig[r>>8&15], hexdig[r>>4&15], hexdig[r&15])
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '"':
				dst = append(dst, '\\', '"')
			case c == '\\':
				dst = append(dst, '\\', '\\')
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20 || c == 0x7f:
				dst = u4(dst, rune(c))
			default:
				dst = append(dst, c)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			dst = u4(u4(dst, r1), r2)
			continue
		}
		dst = u4(dst, r)
	}
	return append(dst, '"')
}
