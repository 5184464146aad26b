package proto

import (
	"encoding/json"
	"errors"
)

// Scopes is the set of stream kinds an API key may subscribe to: a bit
// set of ScopeMarket and ScopeAccount. The zero value means the default,
// both. In JSON it is a list of names, ["market","account"].
type Scopes uint8

// Scope bits.
const (
	// ScopeMarket allows the public sources (every source that is not
	// private to an account).
	ScopeMarket Scopes = 1 << iota
	// ScopeAccount allows the key's own account's private sources.
	ScopeAccount

	// AllScopes is every scope; the zero Scopes means the same.
	AllScopes = ScopeMarket | ScopeAccount
)

// Scope names, as they appear in JSON and on the command line.
const (
	ScopeNameMarket  = "market"
	ScopeNameAccount = "account"
)

// ErrUnknownScope is returned for a scope name other than "market" or
// "account".
var ErrUnknownScope = errors.New(`proto: unknown scope (want "market" or "account")`)

// ParseScopes returns the set of names. Duplicates are allowed; no names
// (nil or empty) is the zero Scopes (both).
func ParseScopes(names []string) (Scopes, error) {
	var s Scopes
	for _, n := range names {
		switch n {
		case ScopeNameMarket:
			s |= ScopeMarket
		case ScopeNameAccount:
			s |= ScopeAccount
		default:
			return 0, ErrUnknownScope
		}
	}
	return s, nil
}

// Effective is s with the zero value (the default) spelled out as
// AllScopes.
func (s Scopes) Effective() Scopes {
	if s&AllScopes == 0 {
		return AllScopes
	}
	return s & AllScopes
}

// Allows reports whether s allows a source: a private (account) source
// needs ScopeAccount, any other ScopeMarket. It does not allocate.
func (s Scopes) Allows(private bool) bool {
	if private {
		return s.Effective()&ScopeAccount != 0
	}
	return s.Effective()&ScopeMarket != 0
}

// Missing is the name of the scope a source needs that s lacks ("" when
// s allows it).
func (s Scopes) Missing(private bool) string {
	switch {
	case s.Allows(private):
		return ""
	case private:
		return ScopeNameAccount
	default:
		return ScopeNameMarket
	}
}

// Names returns the names of the effective scopes, in the order market,
// account.
func (s Scopes) Names() []string {
	e := s.Effective()
	out := make([]string, 0, 2)
	if e&ScopeMarket != 0 {
		out = append(out, ScopeNameMarket)
	}
	if e&ScopeAccount != 0 {
		out = append(out, ScopeNameAccount)
	}
	return out
}

// MarshalJSON writes the effective scopes as a list of names.
func (s Scopes) MarshalJSON() ([]byte, error) { return json.Marshal(s.Names()) }

// UnmarshalJSON reads a list of names (ParseScopes).
func (s *Scopes) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	v, err := ParseScopes(names)
	if err != nil {
		return err
	}
	*s = v
	return nil
}
