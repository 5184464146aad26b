package testdeps

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reachTimeout bounds the check that a server named by NATS_URL or
// REDIS_URL answers.
const reachTimeout = 5 * time.Second

// InCI reports whether the CI environment variable is set to a true value
// ("true", "1", ...; strconv.ParseBool). .ci/run exports CI=true.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// DebianPackage returns the Debian package that installs binary (its own
// name when testdeps does not know it).
func DebianPackage(binary string) string {
	switch binary {
	case "redis-cli", "redis-benchmark":
		return "redis-tools"
	default: // nats-server, redis-server, ...
		return binary
	}
}

// Require returns the path of binary found on PATH. When it is missing it
// calls t.Fatalf in CI and t.Skipf elsewhere, with a message that names
// the binary and its Debian package: a suite that cannot run fails CI.
func Require(t testing.TB, binary string) string {
	t.Helper()
	if path, err := exec.LookPath(binary); err == nil {
		return path
	}
	pkg := DebianPackage(binary)
	msg := fmt.Sprintf("testdeps: %s not found on PATH; install Debian's package %s (apt-get install -y %s)", binary, pkg, pkg)
	if InCI() {
		t.Fatalf("%s (CI=true: a suite that cannot run fails)", msg)
	}
	t.Skipf("%s (skipped outside CI; in CI this fails)", msg)
	return ""
}

// reachable checks that the server of rawURL (a comma-separated list is
// allowed, as NATS_URL allows; one answering entry is enough) answers
// probe within reachTimeout. defaultPort applies to URLs without a port.
func reachable(rawURL string, defaultPort int, probe probeFunc) error {
	var errs []error
	for u := range strings.SplitSeq(rawURL, ",") {
		addr, err := hostPort(strings.TrimSpace(u), defaultPort)
		if err == nil {
			err = probe(addr, reachTimeout)
		}
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// hostPort returns the host:port of a URL such as nats://user:pw@host:4222
// or redis://host/0, or of a bare host:port.
func hostPort(raw string, defaultPort int) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = strconv.Itoa(defaultPort)
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
