package procnode

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// SpendCredits spends one key's credits from connections on several nodes
// so that a test can compare what the cluster admitted with what one
// budget allows.
//
// The math. The key has C credits per window W (C = 120, W = 60 s); a ping
// costs 1. In cluster mode Redis holds the key's budget as one GCRA cell
// (emission interval τ = W/C = 0.5 s, burst C) and a node admits a ping
// only from a lease of credits Redis granted it. Redis grants a credit only
// while tat + τ <= now + W, and every grant moves tat by τ (a returned lease
// moves it back). The key is new, so at its first grant t1 the cell is full
// (tat <= t1); after G net grants tat >= t1 + G·τ, and at any time t the
// total granted is
//
//	G(t) <= (t + W - t1)/τ = C + C·(t - t1)/W.
//
// Admitted pings A are a subset of the granted credits, so with t0 taken
// before the first connection is dialed (t0 <= t1) and t2 after the last
// reply, A <= C + C·(t2 - t0)/W is a hard bound: any per-node budget (three
// nodes each admitting C) would break it by far.
//
// Under demand that never lets up, the cell never fills again (after the
// first burst tat is about t1 + W, far ahead of now for the whole run, as
// T < W), so no refill is lost and the ideal is exactly
//
//	ideal = C + C·T/W,  T = (last ping sent) - t0,
//
// the burst plus the refill of T: with T = 20 s, 120 + 40 = 160
// (CreditResult.Ideal; Bound is the hard bound). What the cluster can lose
// is credits granted to a node but not spent when the run ends, and refill
// not yet leased at the end: a few credits. The suites require
// |A - ideal| <= 5 % of ideal (8 credits).
//
// The traffic. The suites spread fifteen connections unevenly: 8 on
// node1, 5 on node2, 2 on node3. Each sends a ping, waits for the answer,
// sends the next after fastGap (200 ms: 5 msg/s, under the per-connection 10 msg/s, burst
// 20) when it got a pong, or after slowGap (2.5 s) when it got RATE_LIMITED.
// So a connection sees at most 4 refusals per 10 s (more than 10 would close
// it with 1008 and start a 30 s cooldown for the key), while the fifteen
// together still ask at least 15/2.5 s = 6 times per second, three times
// the refill rate C/W = 2 per second: demand saturates the budget
// throughout. The first burst of C credits goes in under 2 s (15 × 5
// msg/s). A node asks Redis for more lease when one of its connections is
// refused, and the credit then waits in that node's lease for the node's
// next ping; the more connections, the shorter that wait and the smaller
// the loss at the end (with 9 connections the run admitted about 2 % less
// than ideal, with 15 about 0.5 %).
const (
	CreditWindow = time.Minute             // W of every key
	fastGap      = 200 * time.Millisecond  // after a pong
	slowGap      = 2500 * time.Millisecond // after a RATE_LIMITED
)

// CreditResult is what a SpendCredits run admitted.
type CreditResult struct {
	Pongs    int   // admitted pings, A
	Refusals int   // RATE_LIMITED answers
	Admitted []int // pongs per node
	Refused  []int // RATE_LIMITED per node
	// WorstConn is the most refusals one connection got within any 10 s.
	WorstConn int
	// T is from t0 (before the first dial) to the last ping sent.
	T time.Duration
	// Ideal is C + C·T/W; Bound is C + C·(last answer - t0)/W, the most
	// one budget can admit; Dev is (Pongs - Ideal)/Ideal.
	Ideal, Bound, Dev float64
}

// SpendCredits dials conns[i] connections with key to nodes[i],
// round-robin, and pings through all of them as described above until run
// has passed since before the first dial; key has creditsPerMinute credits
// per minute. A connection that fails is a t.Errorf; a dial that fails is
// a t.Fatal. The connections are closed in t.Cleanup.
func SpendCredits(t *testing.T, nodes []*Node, conns []int, key string, creditsPerMinute int, run time.Duration) CreditResult {
	t.Helper()
	t0 := time.Now()
	var cs []*websocket.Conn
	var connNode []int
	total := 0
	for _, k := range conns {
		total += k
	}
	for round := 0; len(cs) < total; round++ {
		for i, n := range nodes {
			if round < conns[i] {
				c, err := n.Dial(key)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.CloseNow() })
				cs, connNode = append(cs, c), append(connNode, i)
			}
		}
	}
	stop := t0.Add(run)
	tallies := make([]tally, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		first := time.Now().Add(time.Duration(i) * fastGap / time.Duration(len(cs))) // staggered
		wg.Go(func() { tallies[i].pingLoop(c, first, stop) })
	}
	wg.Wait()

	r := CreditResult{Admitted: make([]int, len(nodes)), Refused: make([]int, len(nodes))}
	var lastSend, lastRecv time.Time
	for i := range tallies {
		tl := &tallies[i]
		if tl.err != nil {
			t.Errorf("connection %d on %s: %v", i, nodes[connNode[i]].ID(), tl.err)
		}
		r.Pongs += tl.pongs
		r.Refusals += len(tl.refusals)
		r.Admitted[connNode[i]] += tl.pongs
		r.Refused[connNode[i]] += len(tl.refusals)
		r.WorstConn = max(r.WorstConn, tl.maxRefusalsIn10s())
		if tl.lastSend.After(lastSend) {
			lastSend = tl.lastSend
		}
		if tl.lastRecv.After(lastRecv) {
			lastRecv = tl.lastRecv
		}
	}
	c := float64(creditsPerMinute)
	r.T = lastSend.Sub(t0)
	r.Ideal = c * (1 + r.T.Seconds()/CreditWindow.Seconds())
	r.Bound = c * (1 + lastRecv.Sub(t0).Seconds()/CreditWindow.Seconds())
	r.Dev = (float64(r.Pongs) - r.Ideal) / r.Ideal
	return r
}

// tally is what one pinging connection saw.
type tally struct {
	pongs    int
	refusals []time.Time
	lastSend time.Time
	lastRecv time.Time
	err      error
}

// pingLoop pings through c from first until stop, pacing as described
// above.
func (tl *tally) pingLoop(c *websocket.Conn, first, stop time.Time) {
	next := first
	for next.Before(stop) {
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait) // pacing, not waiting for an event
		}
		sent := time.Now()
		if !sent.Before(stop) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Write(ctx, websocket.MessageText, []byte(`{"method":"ping"}`))
		if err == nil {
			tl.lastSend = sent
		}
		var b []byte
		if err == nil {
			_, b, err = c.Read(ctx)
		}
		cancel()
		if err != nil {
			tl.err = err
			return
		}
		tl.lastRecv = time.Now()
		var f struct {
			Channel string `json:"channel"`
			Data    struct {
				Code string `json:"code"`
			} `json:"data"`
		}
		_ = json.Unmarshal(b, &f)
		switch {
		case f.Channel == "pong":
			tl.pongs++
			next = sent.Add(fastGap)
		case f.Channel == "error" && f.Data.Code == "RATE_LIMITED":
			tl.refusals = append(tl.refusals, sent)
			next = sent.Add(slowGap)
		default:
			tl.err = fmt.Errorf("unexpected frame %s", b)
			return
		}
	}
}

// maxRefusalsIn10s is the largest number of refusals within any 10 s.
func (tl *tally) maxRefusalsIn10s() int {
	best, j := 0, 0
	for i := range tl.refusals {
		for tl.refusals[i].Sub(tl.refusals[j]) >= 10*time.Second {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}
