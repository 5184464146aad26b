//go:build linux

package testdeps

import "syscall"

// sysProcAttr makes the kernel kill a server when the test process dies,
// so a crashed or interrupted test leaves no nats-server or redis-server
// behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
