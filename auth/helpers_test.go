package auth_test

import (
	"floodgate/keyapi/keyapitest"
	"time"
)

var t0 = time.Date(2025, 5, 20, 12, 0, 0, 0, time.UTC)

// wallet signs requests like the Pacifica SDK.
type wallet = keyapitest.Wallet

func newWallet(seed byte) *wallet { return keyapitest.NewWallet(seed) }

// The account endpoints of BenchmarkAccountAPI_RevokedKeys.
const (
	pathCreate = "/api/v1/account/api_keys/create"
	pathList   = "/api/v1/account/api_keys"
)
