//go:build !linux

package testdeps

import "syscall"

// sysProcAttr is nil where the kernel cannot kill a child with its parent:
// t.Cleanup alone stops the servers.
func sysProcAttr() *syscall.SysProcAttr { return nil }
