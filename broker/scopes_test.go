package broker_test

import (
	"testing"

	"floodgate/broker"
	"floodgate/internal/proto"
)

func TestScopeCheck(t *testing.T) {
	for _, tc := range []struct {
		sc                    proto.Scopes
		market, accountStream bool
	}{
		{0, true, true}, {proto.AllScopes, true, true}, {proto.ScopeMarket, true, false}, {proto.ScopeAccount, false, true},
	} {
		if broker.ScopeAllows(tc.sc, false) != tc.market || broker.ScopeAllows(tc.sc, true) != tc.accountStream {
			t.Errorf("scopes %v: want market %v account %v", tc.sc, tc.market, tc.accountStream)
		}
	}
	// Hot path: the check on every subscribe allocates nothing.
	if n := testing.AllocsPerRun(1000, func() {
		broker.ScopeAllows(proto.ScopeMarket, true)
		broker.ScopeAllows(proto.ScopeAccount, false)
	}); n != 0 {
		t.Fatalf("scope check allocates %v", n)
	}
}
