package testdeps

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartNATS runs a private nats-server with JetStream on (-js, its store in
// a t.TempDir() that Restart keeps) on a free port of 127.0.0.1, and
// returns once its INFO line says JetStream is enabled. A missing binary
// fails t in CI and skips it elsewhere (see Require).
func StartNATS(t testing.TB, opts *Options) *Server {
	t.Helper()
	dir := t.TempDir()
	return startServer(t, spec{
		binary: "nats-server",
		scheme: "nats",
		ports:  1,
		args: func(ports []int) []string {
			return []string{"-a", "127.0.0.1", "-p", strconv.Itoa(ports[0]),
				"-js", "-sd", filepath.Join(dir, "store")}
		},
		probe: natsProbe(true),
	}, dir, opts)
}

// NATSURL returns the NATS URL for a test that may share a server: in CI a
// private server's (StartNATS); elsewhere NATS_URL when it is set, after
// checking that it answers (t.Fatalf when not: a set variable never makes
// a test skip), else a private server's, or a skip when nats-server is
// missing.
func NATSURL(t testing.TB) string {
	t.Helper()
	if !InCI() {
		if u := os.Getenv("NATS_URL"); u != "" {
			if err := reachable(u, 4222, natsProbe(false)); err != nil {
				t.Fatalf("testdeps: NATS_URL=%s is set but does not answer: %v (unset it to use a private nats-server)", u, err)
			}
			return u
		}
	}
	return StartNATS(t, nil).URL()
}

// natsProbe returns a probe that reads the INFO line a NATS server sends
// on connect; with jetStream it also requires "jetstream":true in it.
func natsProbe(jetStream bool) probeFunc {
	return func(addr string, timeout time.Duration) error {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		line, err := bufio.NewReaderSize(conn, 4096).ReadString('\n')
		if err != nil {
			return fmt.Errorf("no INFO line: %w", err)
		}
		if !strings.HasPrefix(line, "INFO ") {
			return fmt.Errorf("not a NATS server: got %.40q", line)
		}
		if jetStream && !strings.Contains(line, `"jetstream":true`) {
			return errors.New("JetStream not enabled yet")
		}
		return nil
	}
}
