package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/mr-tron/base58"
)

// Key format: "{prefix}_{secret}". The prefix is PrefixLen random base58
// characters (the key's public id); the secret is SecretBytes random bytes
// in base58 (1..MaxSecretLen characters, 22 for almost every key).
const (
	// PrefixLen is the length of a key prefix in characters.
	PrefixLen = 8
	// SecretBytes is the number of random bytes in a key secret.
	SecretBytes = 16
	// MaxSecretLen is the longest base58 encoding of SecretBytes bytes.
	MaxSecretLen = 22
	// MaxKeyLen is the longest well-formed key.
	MaxKeyLen = PrefixLen + 1 + MaxSecretLen
)

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58Index maps a byte to 1 when it is a base58 character.
var base58Index = func() (t [256]bool) {
	for i := 0; i < len(base58Alphabet); i++ {
		t[base58Alphabet[i]] = true
	}
	return t
}()

// ErrMalformedKey is returned by ParseKey for a string that is not a key.
var ErrMalformedKey = errors.New("auth: malformed key")

// KeyHash is the SHA-256 of a full key, the only form a key is stored in.
// It encodes as lowercase hex in JSON.
type KeyHash [32]byte

// Generate returns a new key and its prefix, drawing randomness from r
// (crypto/rand.Reader in production). The key is shown to its owner once
// and never logged.
func Generate(r io.Reader) (key, prefix string, err error) {
	var buf [PrefixLen + 1 + MaxSecretLen]byte
	// Prefix: rejection sampling so every character is equally likely
	// (232 = 4*58, the largest multiple of 58 below 256).
	var rnd [32]byte
	n := 0
	for n < PrefixLen {
		if _, err := io.ReadFull(r, rnd[:]); err != nil {
			return "", "", fmt.Errorf("auth: generate key: %w", err)
		}
		for _, b := range rnd {
			if b >= 232 {
				continue
			}
			buf[n] = base58Alphabet[b%58]
			n++
			if n == PrefixLen {
				break
			}
		}
	}
	buf[PrefixLen] = '_'
	var secret [SecretBytes]byte
	if _, err := io.ReadFull(r, secret[:]); err != nil {
		return "", "", fmt.Errorf("auth: generate key: %w", err)
	}
	key = string(buf[:PrefixLen+1]) + base58.Encode(secret[:])
	return key, key[:PrefixLen], nil
}

// ParseKey checks the syntax of key and returns its prefix, a substring of
// key (copy it with strings.Clone before keeping it, or the whole key stays
// in memory). It does not allocate and does not touch any store.
func ParseKey(key string) (prefix string, err error) {
	if len(key) < PrefixLen+2 || len(key) > MaxKeyLen || key[PrefixLen] != '_' {
		return "", ErrMalformedKey
	}
	for i := 0; i < len(key); i++ {
		if i != PrefixLen && !base58Index[key[i]] {
			return "", ErrMalformedKey
		}
	}
	return key[:PrefixLen], nil
}

// ValidPrefix reports whether p has the syntax of a key prefix.
func ValidPrefix(p string) bool {
	if len(p) != PrefixLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		if !base58Index[p[i]] {
			return false
		}
	}
	return true
}

// Hash returns SHA-256 of the full key. It does not allocate for keys of
// up to 64 bytes (every well-formed key).
func Hash(key string) KeyHash {
	var buf [64]byte
	if len(key) <= len(buf) {
		n := copy(buf[:], key)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(key))
}

// Equal compares two hashes in constant time.
func (h KeyHash) Equal(o KeyHash) bool {
	return subtle.ConstantTimeCompare(h[:], o[:]) == 1
}

// MarshalText encodes the hash as lowercase hex.
func (h KeyHash) MarshalText() ([]byte, error) {
	const hexdig = "0123456789abcdef"
	out := make([]byte, 64)
	for i, b := range h {
		out[2*i] = hexdig[b>>4]
		out[2*i+1] = hexdig[b&15]
	}
	return out, nil
}

// UnmarshalText decodes 64 hex digits.
func (h *KeyHash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return errors.New("auth: key hash: want 64 hex digits")
	}
	for i := 0; i < 32; i++ {
		hi, ok1 := unhex(b[2*i])
		lo, ok2 := unhex(b[2*i+1])
		if !ok1 || !ok2 {
			return errors.New("auth: key hash: bad hex digit")
		}
		h[i] = hi<<4 | lo
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
