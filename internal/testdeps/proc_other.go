//go:build !linux

package testdeps

import (
	"syscall"
	"time"
)

// sysProcAttr is nil where the kernel cannot kill a child with its parent:
// t.Cleanup alone stops the servers.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// awaitStopped cannot observe the process state here: Pause and Resume
// return once the signal is sent.
func awaitStopped(pid int, stopped bool, timeout time.Duration) error { return nil }
