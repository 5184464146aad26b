package testdeps_test

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"floodgate/internal/testdeps"
)

// fakeTB stands in for a test to observe Fatalf and Skipf, which end the
// goroutine as the real ones do; everything else goes to the real test.
type fakeTB struct {
	testing.TB

	// Guarded by mu
	mu      sync.Mutex
	failed  bool
	skipped bool
	msg     string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.end(&f.failed, format, args...)
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.end(&f.skipped, format, args...)
}

func (f *fakeTB) end(flag *bool, format string, args ...any) {
	f.mu.Lock()
	*flag = true
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// result returns what fn did to the fake test.
func (f *fakeTB) result() (failed, skipped bool, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed, f.skipped, f.msg
}

// observe runs fn on its own goroutine with a fake test and waits for it.
func observe(t *testing.T, fn func(testing.TB)) *fakeTB {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// closedPort returns a port of 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

func TestRequire_MissingBinaryFailsInCISkipsOutside(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		binary, pkg string
		start       func(testing.TB)
	}{
		{"nats-server", "nats-server", func(tb testing.TB) { testdeps.StartNATS(tb, nil) }},
		{"redis-server", "redis-server", func(tb testing.TB) { testdeps.StartRedis(tb, nil) }},
		{"redis-cli", "redis-tools", func(tb testing.TB) { testdeps.StartRedisCluster(tb, nil) }},
	} {
		for _, ci := range []string{"true", "false", ""} {
			t.Setenv("CI", ci)
			failed, skipped, msg := observe(t, tc.start).result()
			inCI := ci == "true"
			if failed != inCI || skipped == inCI {
				t.Errorf("%s, CI=%q: failed %v skipped %v, want failed %v: %s", tc.binary, ci, failed, skipped, inCI, msg)
			}
			for _, want := range []string{tc.binary + " not found on PATH", "apt-get install -y " + tc.pkg} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s, CI=%q: message %q lacks %q", tc.binary, ci, msg, want)
				}
			}
			t.Logf("CI=%q: %s", ci, msg)
		}
	}
}

func TestURL_SetButUnreachableFailsNeverSkips(t *testing.T) {
	t.Setenv("CI", "false")
	t.Setenv("NATS_URL", "nats://127.0.0.1:"+closedPort(t))
	t.Setenv("REDIS_URL", "redis://127.0.0.1:"+closedPort(t)+"/0")
	for name, fn := range map[string]func(testing.TB) string{
		"NATS_URL": testdeps.NATSURL, "REDIS_URL": testdeps.RedisURL,
	} {
		failed, skipped, msg := observe(t, func(tb testing.TB) { fn(tb) }).result()
		if !failed || skipped || !strings.Contains(msg, name+"=") || !strings.Contains(msg, "does not answer") {
			t.Errorf("%s unreachable: failed %v skipped %v %q, want a failure naming it", name, failed, skipped, msg)
		}
	}
}

func TestURL_UsesEnvOutsideCI(t *testing.T) {
	nats, redis := testdeps.StartNATS(t, nil), testdeps.StartRedis(t, nil)
	t.Setenv("CI", "false")
	// A list, as NATS_URL allows: one answering entry is enough.
	natsURL := "nats://127.0.0.1:" + closedPort(t) + "," + nats.URL()
	t.Setenv("NATS_URL", natsURL)
	t.Setenv("REDIS_URL", redis.URL()+"/0")
	if got := testdeps.NATSURL(t); got != natsURL {
		t.Errorf("NATSURL = %q, want NATS_URL %q", got, natsURL)
	}
	if got := testdeps.RedisURL(t); got != redis.URL()+"/0" {
		t.Errorf("RedisURL = %q, want REDIS_URL %q", got, redis.URL()+"/0")
	}
}

func TestURL_PrivateInCIAndWhenUnset(t *testing.T) {
	unreachableNATS := "nats://127.0.0.1:" + closedPort(t)
	unreachableRedis := "redis://127.0.0.1:" + closedPort(t)
	for _, env := range []struct{ ci, nats, redis string }{
		{"true", unreachableNATS, unreachableRedis}, // CI ignores the variables
		{"false", "", ""},
	} {
		t.Setenv("CI", env.ci)
		t.Setenv("NATS_URL", env.nats)
		t.Setenv("REDIS_URL", env.redis)
		for name, fn := range map[string]func(testing.TB) string{
			"nats": testdeps.NATSURL, "redis": testdeps.RedisURL,
		} {
			got := fn(t)
			if !strings.HasPrefix(got, name+"://127.0.0.1:") || got == env.nats || got == env.redis {
				t.Errorf("CI=%s: %s URL %q, want a private server's", env.ci, name, got)
			}
			if strings.HasSuffix(got, ":4222") || strings.HasSuffix(got, ":6379") {
				t.Errorf("CI=%s: %s URL %q is on the shared port", env.ci, name, got)
			}
		}
	}
}
