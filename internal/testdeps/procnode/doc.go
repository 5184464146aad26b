// Package procnode runs `floodgate serve` as child processes for the
// process-level suites (cluster/, chaos/) and talks to them the way an
// operator and a websocket client would.
//
// # Suite and nodes
//
// Main is a suite's TestMain: it builds floodgate/cmd/floodgate once
// (unless Options.Binary names a build), runs the tests, closes the
// suite's idle HTTP connections and, when every test passed, fails the run
// on leaked goroutines (goleak). Suite.StartNodes starts one `floodgate
// serve` per Spec, in parallel, on free ports of 127.0.0.1 (--listen and
// --api-listen 127.0.0.1:0, JSON logs, a private --data-dir), and returns
// once each has logged "floodgate serving" with its listen addresses (at
// most Options.ReadyTimeout). Each node keeps the last 200 to 400 lines of
// its log: Node.Tail reads them, and t.Cleanup kills the process and, when
// the test failed, logs its last 40 lines. Node.Kill sends SIGKILL and
// waits for the exit; the dependencies' SIGSTOP and SIGCONT are
// internal/testdeps' Server.Pause and Server.Resume.
//
// # Talking to a node
//
// Node.Admin calls the operator API with the suite's admin token and
// decodes the response envelope (keyapi.Envelope); CreateKey and
// TryCreateKey make API keys (keyapi.CreatedKey);
// Ready and Metric read /readyz and /metrics. Node.Dial and Node.Upgrade
// open websockets to /ws with an optional PF-API-KEY. Poll waits for a
// condition at 20 ms intervals. NewAccount and RandomToken give the fresh
// accounts and subject prefixes that keep runs apart. SpendCredits spends
// one key's credits from connections on several nodes at a set pace and
// says how far the admitted pings are from one budget (the credit runs of
// both suites).
//
// # Concurrency
//
// A Suite and its Nodes are safe for concurrent use; Tail may run while
// the log is being read. The functions that take a *testing.T call
// t.Fatal and must run on the test's goroutine; the others return errors
// and may run anywhere. The package has no package-level mutable state: a
// suite holds its *Suite in one variable that Main sets before any test
// runs.
//
// # Hot path
//
// None: this is test support. Starting a node costs one fork/exec and
// about 100 ms until it serves; each node has one goroutine that reads its
// log and ends with the process.
package procnode
