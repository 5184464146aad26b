//go:build ignore

// Mutants applies one-line breaking changes to a temporary copy of the
// repository, one at a time, and checks that a named test of `make test`
// fails for each: the tests guard what they claim to guard.
//
//	go run scripts/mutants.go            # every mutant (make mutants)
//	go run scripts/mutants.go -only lease # the mutants whose name contains "lease"
//
// A mutant is defined by the code it replaces (a snippet that must occur
// exactly once in its file), not by a line number, so it stays valid while
// the code around it moves. A snippet that is no longer found is reported
// as STALE: update the mutant with the code. Each run copies the tracked
// files (and uncommitted edits) to a temporary directory; the working tree
// is never modified. Tests run without -race, with -count=1.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type mutant struct {
	name string // short, unique
	file string // repository-relative
	from string // code replaced; must occur exactly once
	to   string
	pkg  string // package of the test that must fail
	test string // the test (a -run pattern matching it)
}

var mutants = []mutant{
	{
		name: "revoke-closes-first-session-only",
		file: "broker/server.go",
		from: "\t\t\tsess.requestClose(reason)\n\t\t\tn++\n",
		to:   "\t\t\tsess.requestClose(reason)\n\t\t\tn++\n\t\t\tbreak\n",
		pkg:  "./node", test: "TestRevokeClosesEverySessionOfTheKey",
	},
	{
		name: "dot-in-param-value",
		file: "fanout/sources.go",
		from: "c >= '0' && c <= '9', c == '_', c == '-':",
		to:   "c >= '0' && c <= '9', c == '_', c == '-', c == '.':",
		pkg:  "./fanout", test: "FuzzParamAllowed",
	},
	{
		name: "dot-in-subject-token",
		file: "fanout/sources.go",
		from: "c >= '0' && c <= '9', c == '_', c == '-':",
		to:   "c >= '0' && c <= '9', c == '_', c == '-', c == '.':",
		pkg:  "./broker", test: "FuzzParseFrame",
	},
	{
		name: "delivery-walk-outside-channel-lock",
		file: "fanout/live.go",
		from: "\tif f != nil {\n\t\taccepted = ch.live.walk(f)\n\t}\n",
		to:   "\tch.mu.Unlock()\n\tif f != nil {\n\t\taccepted = ch.live.walk(f)\n\t}\n\tch.mu.Lock()\n",
		pkg:  "./fanout", test: "TestNoFrameAfterUnsubscribeReturns",
	},
	{
		name: "lease-spent-below-cost",
		file: "limiter/cluster.go",
		from: "if c.leased >= cost || force {",
		to:   "if c.leased > 0 || force {",
		pkg:  "./limiter", test: "TestCluster_CostAboveLeaseIsRefused",
	},
	{
		name: "credits-per-minute-ignores-window",
		file: "limiter/policy.go",
		from: "float64(l.CreditsPerMinute)*float64(t.CreditWindow)/float64(time.Minute)",
		to:   "float64(l.CreditsPerMinute)",
		pkg:  "./limiter", test: "TestOverride_CreditsPerMinuteWithOtherWindow",
	},
	{
		name: "charge-allocates",
		file: "limiter/conn.go",
		from: "return c.charge(cost, now.UnixNano(), false)",
		to:   "return c.charge(cost, now.In(time.FixedZone(\"x\", 0)).UnixNano(), false)",
		pkg:  "./limiter", test: "TestCharge_ZeroAllocs",
	},
	{
		name: "pong-frame-changed",
		file: "broker/codec.go",
		from: "b = append(b, `{\"channel\":\"pong\"`...)",
		to:   "b = append(b, `{\"channel\":\"pong\" `...)",
		pkg:  "./broker", test: "TestHandlePingAllocatesNothing",
	},
	{
		name: "quota-retry-one-bucket-late",
		file: "limiter/quota.go",
		from: "\t\t\treturn rel - now\n",
		to:   "\t\t\treturn rel - now + width\n",
		pkg:  "./limiter", test: "TestQuota_RetryAfterExactAndWithinWindow",
	},
	{
		name: "slow-consumer-never-closed",
		file: "broker/session.go",
		from: "} else if frames >= o.QueueFrames || (bytes+len(it.wire) > o.QueueBytes && frames > 0) {",
		to:   "} else if false {",
		pkg:  "./broker", test: "TestSlowConsumerClosed1013WhileHealthyClientGetsEverything",
	},
	{
		name: "account-stream-of-anyone",
		file: "fanout/channel.go",
		from: "if src.Private && (account == \"\" || account != string(ch.Values[src.AccountParam])) {",
		to:   "if src.Private && account == \"\" {",
		pkg:  "./node", test: "TestAccountSourcesNeedAKeyOfThatAccount",
	},
	{
		name: "xff-trusted-from-anyone",
		file: "node/identity.go",
		from: "if !peer.IsValid() || !isTrusted(peer, trusted) {",
		to:   "if !peer.IsValid() {",
		pkg:  "./node", test: "TestClientIP",
	},
	{
		name: "failed-key-not-counted",
		file: "node/admit.go",
		from: "return info, a.failed(ip, now, &refInvalidKey)",
		to:   "return info, &refInvalidKey",
		pkg:  "./node", test: "TestFailedKeyAttemptsBlockTheIP",
	},
	{
		name: "empty-key-is-anonymous",
		file: "node/identity.go",
		from: "\t\tcase k == \"\":\n\t\t\tempty = true\n",
		to:   "\t\tcase k == \"\":\n",
		pkg:  "./node", test: "TestEmptyKeyIsInvalidAndAFailedAttempt",
	},
	{
		name: "key-hash-compare-always-true",
		file: "auth/keys.go",
		from: "return subtle.ConstantTimeCompare(h[:], o[:]) == 1",
		to:   "return subtle.ConstantTimeCompare(h[:], o[:]) == 1 || true",
		pkg:  "./auth", test: "TestKeyring_Verify",
	},
	{
		name: "status-bad-key-not-counted",
		file: "keyapi/admission.go",
		from: "if err := s.opts.Limiter.FailedKey(s.opts.ClientIP(r), now); err != nil {",
		to:   "if err := error(nil); err != nil {",
		pkg:  "./keyapi", test: "TestStatus_FailedKeys",
	},
	{
		name: "pending-cap-ignored",
		file: "node/pending.go",
		from: "if l.counts[key] >= int(l.max.Load()) {",
		to:   "if false && l.counts[key] >= int(l.max.Load()) {",
		pkg:  "./node", test: "TestPendingSocketsCappedPerIP",
	},
	{
		name: "revoked-key-stays-active",
		file: "auth/boltstore.go",
		from: "err = tx.Bucket(bucketActive).Delete(sk)",
		to:   "err = nil",
		pkg:  "./auth", test: "TestStore_Bolt",
	},
	{
		name: "expiry-window-unbounded",
		file: "keyapi/account.go",
		from: "if req.ExpiryWindow > s.opts.MaxExpiryWindow.Milliseconds() {",
		to:   "if req.ExpiryWindow > 1<<62 {",
		pkg:  "./keyapi", test: "TestAccount_ExpiryWindow",
	},
	{
		name: "refusals-not-coalesced",
		file: "node/events.go",
		from: "if i, ok := w.index[k]; ok {",
		to:   "if i, ok := w.index[k]; ok && i < 0 {",
		pkg:  "./node", test: "TestRefusalFloodIsCoalesced",
	},
	{
		name: "oversize-frame-accepted",
		file: "broker/session.go",
		from: "\t\tif n == len(buf) {\n\t\t\treturn n, errTooBig\n",
		to:   "\t\tif n == len(buf)+1 {\n\t\t\treturn n, errTooBig\n",
		pkg:  "./broker", test: "TestOversizeFrameClosed1009",
	},
	// Issue 15: scopes, allowed IPs, calendar quotas, costs, metering,
	// the status endpoint's per-key budget.
	{
		name: "scope-account-always-allowed",
		file: "internal/proto/scopes.go",
		from: "\t\treturn s.Effective()&ScopeAccount != 0\n",
		to:   "\t\treturn true\n",
		pkg:  "./node", test: "TestKeyScopeMarketCannotSubscribeAccountStreams",
	},
	{
		name: "cidrs-allow-everyone",
		file: "auth/cidrs.go",
		from: "\tif c == \"\" {\n\t\treturn true\n\t}\n\tip = ip.Unmap()\n",
		to:   "\tif true {\n\t\treturn true\n\t}\n\tip = ip.Unmap()\n",
		pkg:  "./node", test: "TestAllowedCIDRs",
	},
	{
		name: "calendar-week-starts-sunday",
		file: "limiter/quota.go",
		from: "idx = floorDiv(floorDiv(now, dayNs)+3, 7)\n\t\tstart = (idx*7 - 3) * dayNs\n",
		to:   "idx = floorDiv(floorDiv(now, dayNs)+4, 7)\n\t\tstart = (idx*7 - 4) * dayNs\n",
		pkg:  "./limiter", test: "TestCalendarPeriod",
	},
	{
		name: "zero-cost-skips-message-rate",
		file: "limiter/conn.go",
		from: "\tctat, ok, wait := p.connG.take(c.tat, now, 1)\n",
		to:   "\tctat, ok, wait := p.connG.take(c.tat, now, 1)\n\tif cost == 0 {\n\t\tok = true\n\t}\n",
		pkg:  "./limiter", test: "TestCharge_ZeroCostCountsMessageRateOnly",
	},
	{
		name: "delivered-bytes-not-metered",
		file: "broker/writer.go",
		from: "\t\t\ts.deliveredBytes.Add(bytes)\n",
		to:   "",
		pkg:  "./node", test: "TestStatusShowsDeliveredUsage",
	},
	{
		name: "status-key-budget-ignored",
		file: "keyapi/account.go",
		from: "AllowAPIKey(limiter.APIStatus, rec.Prefix, now); d.Refusal != nil {",
		to:   "AllowAPIKey(limiter.APIStatus, rec.Prefix, now); false && d.Refusal != nil {",
		pkg:  "./keyapi", test: "TestStatus_KeyBudget",
	},
	{
		name: "close-key-misses-starting-session",
		file: "broker/server.go",
		from: "\t\tsess.requestClose(kc.close)\n",
		to:   "\t\t_ = kc.close\n",
		pkg:  "./broker", test: "TestCloseKeyRacingANewConnection",
	},
}

func main() {
	only := flag.String("only", "", "run the mutants whose name contains this")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound of one mutant's test run")
	flag.Parse()
	root, err := os.Getwd()
	check(err)
	tmp, err := os.MkdirTemp("", "floodgate-mutants")
	check(err)
	defer os.RemoveAll(tmp)
	check(copyTree(root, tmp))
	var killed, survived, stale, unclear int
	fmt.Printf("%-36s %-44s %s\n", "mutant", "test that must fail", "result")
	for _, m := range mutants {
		if *only != "" && !strings.Contains(m.name, *only) {
			continue
		}
		res := run(tmp, m, *timeout)
		switch {
		case strings.HasPrefix(res, "killed"):
			killed++
		case strings.HasPrefix(res, "STALE"):
			stale++
		case strings.HasPrefix(res, "UNCLEAR"):
			unclear++
		default:
			survived++
		}
		fmt.Printf("%-36s %-44s %s\n", m.name, m.pkg+" "+m.test, res)
	}
	fmt.Printf("\n%d killed, %d survived, %d stale, %d unclear\n", killed, survived, stale, unclear)
	if survived+stale+unclear > 0 {
		os.Exit(1)
	}
}

// run applies m in dir, runs its test, restores the file and says how the
// test took it.
func run(dir string, m mutant, timeout time.Duration) string {
	path := filepath.Join(dir, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "STALE: " + err.Error()
	}
	if n := bytes.Count(orig, []byte(m.from)); n != 1 {
		return fmt.Sprintf("STALE: the snippet occurs %d times in %s", n, m.file)
	}
	check(os.WriteFile(path, bytes.Replace(orig, []byte(m.from), []byte(m.to), 1), 0o644))
	defer func() { check(os.WriteFile(path, orig, 0o644)) }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-run", "^"+m.test+"$", m.pkg)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Second)
	switch {
	case err == nil:
		return "SURVIVED (the test passed with the mutant)"
	case bytes.Contains(out, []byte("--- FAIL: "+m.test)):
		return fmt.Sprintf("killed (%v)", took)
	case bytes.Contains(out, []byte("build failed")) || bytes.Contains(out, []byte("setup failed")):
		return "STALE: the mutant does not compile:\n" + string(out)
	case bytes.HasPrefix(out, []byte("panic: ")) || bytes.Contains(out, []byte("\npanic: ")):
		return fmt.Sprintf("killed: the test crashed (%v)", took)
	default:
		return fmt.Sprintf("UNCLEAR: the run failed without \"--- FAIL: %s\" (%v):\n%s", m.test, took, lastLines(out, 8))
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// copyTree copies the files git knows (tracked, and untracked ones not
// ignored) from src to dst.
func copyTree(src, dst string) error {
	out, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return err
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			continue // deleted in the working tree
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(2)
	}
}
