//go:build linux

package testdeps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr makes the kernel kill a server when the test process dies,
// so a crashed or interrupted test leaves no nats-server or redis-server
// behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// awaitStopped waits until every thread of pid is stopped (stopped true,
// after SIGSTOP) or none is (after SIGCONT), as /proc tells, at most
// timeout: a signal is delivered asynchronously, and a Pause that returned
// while the server still answers would make tests racy.
func awaitStopped(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		all, err := threadsStopped(pid, stopped)
		if err != nil || all {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: threads not all stopped=%v within %v", pid, stopped, timeout)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// threadsStopped reports whether every thread of pid is (stopped) or is
// not (!stopped) in state T (stopped) or t (traced).
func threadsStopped(pid int, stopped bool) (bool, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return false, fmt.Errorf("pid %d: no threads in /proc: %v", pid, err)
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread has exited
		}
		// The state follows the parenthesized command name, which may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return false, fmt.Errorf("%s: unexpected %.60q", p, s)
		}
		state := s[i+2]
		if (state == 'T' || state == 't') != stopped {
			return false, nil
		}
	}
	return true, nil
}
