package broker

import (
	"context"
	"net/http"
	"time"

	"floodgate/fanout"
	"floodgate/internal/proto"
)

// AdmitAll admits every connection, anonymously, with an unlimited budget.
// It is the default Admitter; a node replaces it with key resolution and
// the limiter.
type AdmitAll struct{}

// Admit implements Admitter.
func (AdmitAll) Admit(context.Context, *http.Request, time.Time) (Identity, Budget, *proto.Refusal) {
	return Identity{Kind: Anonymous}, unlimited{}, nil
}

type unlimited struct{}

func (unlimited) Charge(Op, *fanout.Source, time.Time) Decision { return Decision{Allowed: true} }
func (unlimited) ChargeReplay(int, time.Time) Decision          { return Decision{Allowed: true} }
func (unlimited) MaxSubscriptions() int                         { return 0 }
func (unlimited) Release(time.Time)                             {}
