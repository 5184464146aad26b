package procnode

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Options configures a Suite. The zero value means the defaults.
type Options struct {
	// Binary is the floodgate binary the nodes run. Defaults to one Main
	// builds from floodgate/cmd/floodgate into a temporary directory that
	// it removes when the tests are done.
	Binary string

	// AdminToken is every node's --admin-token (at least 16 characters).
	// Defaults to "procnode-admin-token".
	AdminToken string

	// Config is YAML written to floodgate.yaml in each node's data
	// directory and passed as --config. Defaults to none: no --config.
	Config string

	// ReadyTimeout bounds the wait for a node's "floodgate serving" log
	// line. Defaults to 15 s.
	ReadyTimeout time.Duration
}

// Suite is the floodgate binary and the clients the tests of one suite
// share.
type Suite struct {
	// Immutable after Main
	opts Options
	http *http.Client // operator API and websocket upgrades, 10 s per request
}

// Main is a suite's TestMain body: it builds the binary (see
// Options.Binary), sets *s, runs m, closes the suite's idle connections
// and, when the tests passed, fails on leaked goroutines. It returns the
// exit code for os.Exit.
func Main(m *testing.M, opts Options, s **Suite) int {
	if opts.Binary == "" {
		dir, err := os.MkdirTemp("", "floodgate-procnode")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		opts.Binary = filepath.Join(dir, "floodgate")
		out, err := exec.Command("go", "build", "-o", opts.Binary, "floodgate/cmd/floodgate").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build floodgate: %v\n%s", err, out)
			return 1
		}
	}
	suite := newSuite(opts)
	*s = suite
	code := m.Run()
	suite.http.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// newSuite returns a suite of opts with the defaults filled in.
func newSuite(opts Options) *Suite {
	if opts.AdminToken == "" {
		opts.AdminToken = "procnode-admin-token"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 15 * time.Second
	}
	return &Suite{opts: opts, http: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
}
