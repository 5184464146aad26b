package broker_test

import (
	"io"
	"net"
	"os"
	"testing"
)

// The floor under every delivery: what the kernel charges for one socket
// write on this machine, against a syscall that does nothing. The broker's
// writer coalesces frames because of the first number.

// BenchmarkSyscall_LoopbackWrite200B: one 200-byte write to a loopback TCP
// socket whose peer drains it on another goroutine.
func BenchmarkSyscall_LoopbackWrite200B(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	<-done
}

// BenchmarkSyscall_ReadDevNull: the cheapest syscall, for scale.
func BenchmarkSyscall_ReadDevNull(b *testing.B) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = f.Read(buf)
	}
}
