package auth

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// MaxAllowedCIDRs bounds a key's allowed_cidrs.
const MaxAllowedCIDRs = 32

// CIDRs is a key's IP allowlist: canonical prefixes (masked, IPv4 or
// IPv6) joined by commas; empty means any IP. A string so that Record
// stays comparable; in JSON it is a list, ["10.0.0.0/8","2001:db8::/32"].
type CIDRs string

// ParseCIDRs validates and canonicalises a list of CIDRs (a bare address
// is its /32 or /128). The error names the field allowed_cidrs.
func ParseCIDRs(list []string) (CIDRs, error) {
	if len(list) > MaxAllowedCIDRs {
		return "", &FieldError{Field: "allowed_cidrs", Problem: fmt.Sprintf("at most %d entries", MaxAllowedCIDRs)}
	}
	var b strings.Builder
	for i, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(s))
			if aerr != nil || a.Zone() != "" {
				return "", &FieldError{Field: "allowed_cidrs", Problem: fmt.Sprintf("entry %d is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)", i)}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.Masked().String())
	}
	return CIDRs(b.String()), nil
}

// List returns the prefixes as strings (nil when empty).
func (c CIDRs) List() []string {
	if c == "" {
		return nil
	}
	return strings.Split(string(c), ",")
}

// Allows reports whether ip may use the key: c is empty, or ip is in one
// of its prefixes. An IPv4-mapped IPv6 address counts as its IPv4 form.
// It does not allocate.
func (c CIDRs) Allows(ip netip.Addr) bool {
	if c == "" {
		return true
	}
	ip = ip.Unmap()
	rest := string(c)
	for rest != "" {
		var s string
		s, rest, _ = strings.Cut(rest, ",")
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}

// MarshalJSON writes the list.
func (c CIDRs) MarshalJSON() ([]byte, error) {
	l := c.List()
	if l == nil {
		l = []string{}
	}
	return json.Marshal(l)
}

// UnmarshalJSON reads and validates a list (ParseCIDRs).
func (c *CIDRs) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	v, err := ParseCIDRs(list)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
