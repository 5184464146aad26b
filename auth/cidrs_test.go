package auth_test

import (
	"net/netip"
	"testing"

	"floodgate/auth"
)

func TestCIDRsAllows(t *testing.T) {
	c, err := auth.ParseCIDRs([]string{"10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "11.0.0.1": false, "2001:db8::5": true, "2001:db9::5": false, "127.0.0.1": false} {
		if got := c.Allows(netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s: %v want %v", ip, got, want)
		}
	}
	if !auth.CIDRs("").Allows(netip.MustParseAddr("1.2.3.4")) {
		t.Fatal("empty list must allow any IP")
	}
	ip := netip.MustParseAddr("2001:db8::5")
	if n := testing.AllocsPerRun(100, func() { c.Allows(ip) }); n != 0 {
		t.Fatalf("Allows allocates %v", n)
	}
}
