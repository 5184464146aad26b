package testdeps

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Sentinel errors of the Server and RedisCluster methods.
var (
	// ErrNotRunning: Pause or Resume of a server whose process has exited.
	ErrNotRunning = errors.New("testdeps: server not running")
	// ErrExited: the process exited before it answered its probe.
	ErrExited = errors.New("testdeps: server exited before it was ready")
	// ErrNotReady: the process did not answer before Options.ReadyTimeout.
	ErrNotReady = errors.New("testdeps: server not ready before the deadline")
	// ErrStopTimeout: the process outlived Options.StopTimeout after
	// SIGTERM and was killed.
	ErrStopTimeout = errors.New("testdeps: server did not exit before the stop timeout")
)

// pollInterval is the pause between two readiness probes.
const pollInterval = 20 * time.Millisecond

// signalTimeout bounds Pause's and Resume's wait for the process to
// stop or continue.
const signalTimeout = 5 * time.Second

// outputTail is how much of a server's output failure reports show.
const outputTail = 16 << 10

// Options configures the servers of StartNATS, StartRedis and
// StartRedisCluster. A nil *Options means the defaults.
type Options struct {
	// ReadyTimeout bounds the wait for a started or restarted server to
	// answer its probe (and, for a cluster, for cluster_state:ok on every
	// node). Defaults to 15 s.
	ReadyTimeout time.Duration

	// StopTimeout bounds Stop's wait for the exit after SIGTERM; past it
	// the process is killed and Stop returns ErrStopTimeout. Defaults to
	// 10 s.
	StopTimeout time.Duration

	// Args are appended to the command line testdeps builds. redis-server
	// takes the last value of a repeated option, so Args can override
	// testdeps' settings (for example "--cluster-node-timeout", "1000");
	// nats-server flags must not repeat testdeps' own (-a, -p, -js, -sd).
	// Defaults to none.
	Args []string
}

// withDefaults returns a copy of o (nil allowed) with zero fields set to
// their defaults.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.ReadyTimeout <= 0 {
		r.ReadyTimeout = 15 * time.Second
	}
	if r.StopTimeout <= 0 {
		r.StopTimeout = 10 * time.Second
	}
	return r
}

// probeFunc checks once, within timeout, whether the server at addr
// answers its protocol.
type probeFunc func(addr string, timeout time.Duration) error

// spec describes how to run one kind of server.
type spec struct {
	binary string                     // base name, looked up on PATH
	scheme string                     // URL scheme: "nats", "redis"
	ports  int                        // how many free ports the args need
	args   func(ports []int) []string // the command line without the binary
	probe  probeFunc
}

// Server is one private server process on 127.0.0.1. Its port stays the
// same across Restart.
type Server struct {
	// Immutable after start
	name    string // binary base name, for messages
	path    string // binary path
	scheme  string
	port    int      // client port
	args    []string // command line without the binary, ports included
	logPath string   // stdout and stderr of every run, appended
	probe   probeFunc
	opts    Options

	// Held for the whole of Stop, Kill and Restart, which it serializes
	lifeMu sync.Mutex

	// Guarded by mu
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// startServer runs sp in dir and waits until it is ready, retrying on new
// ports when one was taken in the meantime. It fails t when the server
// cannot start. t.Cleanup kills the process and, when t failed, logs its
// output.
func startServer(t testing.TB, sp spec, dir string, opts *Options) *Server {
	t.Helper()
	path := Require(t, sp.binary)
	s := &Server{
		name:    sp.binary,
		path:    path,
		scheme:  sp.scheme,
		logPath: filepath.Join(dir, sp.binary+".log"),
		probe:   sp.probe,
		opts:    opts.withDefaults(),
	}
	t.Cleanup(func() {
		_ = s.Kill()
		if t.Failed() {
			t.Logf("testdeps: %s on %s, last output:\n%s", s.name, s.Addr(), s.Output())
		}
	})
	const attempts = 3
	for i := 1; ; i++ {
		ports, err := freePorts(sp.ports)
		if err != nil {
			t.Fatalf("testdeps: %s: free ports: %v", sp.binary, err)
		}
		s.port, s.args = ports[0], append(sp.args(ports), s.opts.Args...)
		s.lifeMu.Lock()
		err = s.runLocked()
		s.lifeMu.Unlock()
		if err == nil {
			return s
		}
		if errors.Is(err, ErrExited) && i < attempts && strings.Contains(strings.ToLower(s.Output()), "address already in use") {
			continue // another process took the port between freePorts and the bind
		}
		// The cleanup above logs the server's output.
		t.Fatalf("testdeps: start %s: %v", s.commandLine(), err)
	}
}

// commandLine is the server's command line for messages, empty
// arguments quoted.
func (s *Server) commandLine() string {
	var b strings.Builder
	b.WriteString(s.path)
	for _, a := range s.args {
		b.WriteByte(' ')
		if a == "" {
			a = `""`
		}
		b.WriteString(a)
	}
	return b.String()
}

// URL is the server's URL: nats://127.0.0.1:PORT or redis://127.0.0.1:PORT.
func (s *Server) URL() string { return s.scheme + "://" + s.Addr() }

// Addr is the server's client address, 127.0.0.1:PORT.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's client port.
func (s *Server) Port() int { return s.port }

// PID is the process id of the current (or last) process of the server.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server's process has not exited (a paused
// process is running).
func (s *Server) Running() bool {
	_, exited := s.current()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Output returns the last 16 KiB of the server's stdout and stderr, over
// all its runs.
func (s *Server) Output() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no output: %v)", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > outputTail {
		_, _ = f.Seek(st.Size()-outputTail, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Pause stops the process with SIGSTOP and returns once all its threads
// are stopped (on Linux, as /proc tells): it keeps its port and its
// connections but answers nothing until Resume.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT and returns once none of
// its threads is stopped.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT, false) }

// Stop sends SIGTERM (and SIGCONT, so a paused process sees it) and waits
// for the exit, at most Options.StopTimeout; then it kills the process and
// returns ErrStopTimeout. Stopping a server that is not running does
// nothing.
func (s *Server) Stop() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	return s.stopLocked()
}

// Kill sends SIGKILL and waits for the exit. Killing a server that is not
// running does nothing.
func (s *Server) Kill() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	s.killLocked()
	return nil
}

// Restart stops the server (as Stop) if it runs, starts it again on the
// same ports with the same data directory, and waits until it answers.
func (s *Server) Restart() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if err := s.stopLocked(); err != nil {
		return err
	}
	return s.runLocked()
}

// current returns the current process and its exit channel (nil before
// the first start).
func (s *Server) current() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd, s.exited
}

// signal sends sig to the running process and waits until its threads
// are all stopped or all running.
func (s *Server) signal(sig syscall.Signal, stopped bool) error {
	cmd, exited := s.current()
	if exited == nil {
		return fmt.Errorf("%w: %s on %s never started", ErrNotRunning, s.name, s.Addr())
	}
	select {
	case <-exited:
		return fmt.Errorf("%w: %s on %s has exited", ErrNotRunning, s.name, s.Addr())
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%w: %s on %s: %v", ErrNotRunning, s.name, s.Addr(), err)
	}
	if err := awaitStopped(cmd.Process.Pid, stopped, signalTimeout); err != nil {
		select {
		case <-exited:
			return fmt.Errorf("%w: %s on %s has exited", ErrNotRunning, s.name, s.Addr())
		default:
		}
		return fmt.Errorf("testdeps: %s on %s: %v", s.name, s.Addr(), err)
	}
	return nil
}

// stopLocked is Stop; s.lifeMu is held.
func (s *Server) stopLocked() error {
	cmd, exited := s.current()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	timer := time.NewTimer(s.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%w: %s on %s, %v after SIGTERM", ErrStopTimeout, s.name, s.Addr(), s.opts.StopTimeout)
	}
}

// killLocked is Kill; s.lifeMu is held.
func (s *Server) killLocked() {
	cmd, exited := s.current()
	if exited == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-exited
}

// runLocked starts the process and waits until it answers its probe;
// s.lifeMu is held. On an error the process has been killed.
func (s *Server) runLocked() error {
	out, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.path, s.args...)
	cmd.Stdout, cmd.Stderr = out, out // an *os.File: no copying goroutines
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	out.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := waitReady(s.Addr(), s.probe, exited, s.opts.ReadyTimeout); err != nil {
		s.killLocked()
		return fmt.Errorf("%s on %s: %w", s.name, s.Addr(), err)
	}
	return nil
}

// waitReady polls probe every pollInterval until it succeeds, the process
// exits (ErrExited) or timeout passes (ErrNotReady, with the last probe
// error).
func waitReady(addr string, probe probeFunc, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		left := time.Until(deadline)
		err := probe(addr, min(max(left, 10*time.Millisecond), time.Second))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (%v): %v", ErrNotReady, timeout, err)
		}
		select {
		case <-exited:
			return ErrExited
		case <-ticker.C:
		}
	}
}

// freePorts returns n distinct TCP ports of 127.0.0.1 that were free a
// moment ago: all n listeners are open at once, then closed.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
