// Package testdeps starts the real servers that integration, cluster and
// chaos tests need (nats-server, redis-server, a three-shard Redis
// Cluster) as private child processes of the test, and decides whether a
// test that lacks one fails or skips. Its subpackage procnode runs
// `floodgate serve` itself on them, for the cluster and chaos suites.
//
// # Servers
//
// StartNATS, StartRedis and StartRedisCluster run their binaries from PATH
// on free ports of 127.0.0.1 (never the shared 4222 and 6379), with their
// data in t.TempDir(): nats-server with JetStream on, redis-server with
// nothing persisted (--save "" --appendonly no). They return once the
// server answers its protocol (the NATS INFO line, a Redis PONG, and
// cluster_state:ok on every node of a cluster), polled every 20 ms until
// Options.ReadyTimeout. The returned Server gives its URL, address and
// PID, and Stop (SIGTERM and wait), Kill (SIGKILL and wait), Pause
// (SIGSTOP), Resume (SIGCONT) and Restart (same port; NATS keeps its
// JetStream store, a cluster node its nodes.conf). t.Cleanup kills every
// process; when the test failed it also logs the tail of each server's
// output (stdout and stderr go to a file in the server's temp dir, which
// Server.Output reads).
//
// # Policy
//
// A suite that cannot run must fail in CI, not pass by skipping. When a
// binary is missing, Require (and so every Start function) calls t.Fatalf
// if CI is set to a true value ("true", "1"), and t.Skipf otherwise; both
// name the binary and the Debian package that installs it. NATSURL and
// RedisURL resolve the server of a suite that may use a shared one: in CI
// always a private server; elsewhere NATS_URL or REDIS_URL when set (and
// t.Fatalf when that server does not answer: a set variable is never a
// reason to skip), else a private server, else a skip that says why.
//
// # Concurrency
//
// Every function is safe to call from parallel tests: each server gets its
// own ports and directory, and the package has no mutable package-level
// state (CI, PATH and the URL variables are read on each call). A Server's
// methods are safe for concurrent use; Stop, Kill and Restart are
// serialized, so a Kill that arrives during a Restart waits for it. The
// functions that take a testing.TB must run on the test's goroutine, as
// t.Fatalf requires; the Server and RedisCluster methods return errors
// instead and may run on any goroutine.
//
// # Hot path
//
// None: this is test support. Starting a server costs one fork/exec and a
// few milliseconds until it answers (a cluster: three servers and
// redis-cli, well under a second); each process is waited for by one
// goroutine that ends with it.
package testdeps
