package testdeps

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartRedis runs a private redis-server on a free port of 127.0.0.1 that
// persists nothing (--save "" --appendonly no: Restart starts it empty),
// and returns once it answers PING. A missing binary fails t in CI and
// skips it elsewhere (see Require).
func StartRedis(t testing.TB, opts *Options) *Server {
	t.Helper()
	dir := t.TempDir()
	return startServer(t, spec{
		binary: "redis-server",
		scheme: "redis",
		ports:  1,
		args: func(ports []int) []string {
			return redisArgs(dir, ports[0])
		},
		probe: redisPing,
	}, dir, opts)
}

// RedisURL returns the Redis URL for a test that may share a server: in
// CI a private server's (StartRedis); elsewhere REDIS_URL when it is set,
// after checking that it answers (t.Fatalf when not: a set variable never
// makes a test skip), else a private server's, or a skip when
// redis-server is missing.
func RedisURL(t testing.TB) string {
	t.Helper()
	if !InCI() {
		if u := os.Getenv("REDIS_URL"); u != "" {
			if err := reachable(u, 6379, redisAnswers); err != nil {
				t.Fatalf("testdeps: REDIS_URL=%s is set but does not answer: %v (unset it to use a private redis-server)", u, err)
			}
			return u
		}
	}
	return StartRedis(t, nil).URL()
}

// redisArgs is the command line of a private redis-server in dir.
func redisArgs(dir string, port int) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--logfile", ""}
}

// redisPing is the readiness probe: PING answered by PONG (a loading
// server answers an error).
func redisPing(addr string, timeout time.Duration) error {
	reply, err := redisDo(addr, timeout, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// redisAnswers is the reachability probe of a server named by REDIS_URL:
// any reply to PING, even an error such as NOAUTH, shows a Redis there.
func redisAnswers(addr string, timeout time.Duration) error {
	_, err := redisDo(addr, timeout, "PING")
	var re redisError
	if errors.As(err, &re) {
		return nil
	}
	return err
}

// redisError is an error reply of a Redis server.
type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

// redisDo sends one command to the Redis server at addr and returns its
// reply: the text of a simple string, integer or bulk string; an error
// reply as a redisError. Arrays are not supported. The whole exchange
// takes at most timeout.
func redisDo(addr string, timeout time.Duration, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redis: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", redisError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redis: bulk reply %q", line)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	default:
		return "", fmt.Errorf("redis: unsupported reply %.40q", line)
	}
}
