package main_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The socket figure of docs/security.md (issue 11), measured on a real
// `floodgate serve` process so that the client's own goroutines and
// memory are not counted: run with
// `go test -run '^$' -bench Figure -benchtime 1x ./cmd/floodgate/`.

const figureToken = "figure-admin-token-0123456789"

// serverStats reads the process's goroutines, open fds and live heap
// (marked by a GC forced through /debug/pprof/heap?gc=1) from its
// /metrics.
func serverStats(b *testing.B, p *proc) (goroutines, fds int, heap float64) {
	b.Helper()
	req, _ := http.NewRequest("GET", p.apiURL+"/debug/pprof/heap?gc=1", nil)
	req.Header.Set("Authorization", "Bearer "+figureToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest("GET", p.apiURL+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "identity") // no gzip writer left in the server's pool
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "go_goroutines":
			goroutines = int(v)
		case "process_open_fds":
			fds = int(v)
		case "go_gc_heap_live_bytes":
			heap = v
		}
	}
	return goroutines, fds, heap
}

// refusals opens total sockets to addr, workers at a time, each sending
// one request that is refused and then idling until the server closes
// it; it returns the statuses, the sockets left open 2 s after their
// refusal and the slowest close.
func refusals(b *testing.B, addr string, total, workers int) (map[int]int, int, time.Duration) {
	reqs := []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nPF-API-KEY: Unknown1_2222222222222222222222\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://evil.example\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	var mu sync.Mutex
	statuses := map[int]int{}
	open, slowest := 0, time.Duration(0)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.WriteString(c, reqs[i%len(reqs)])
				br := bufio.NewReader(c)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				status := 0
				if resp, err := http.ReadResponse(br, nil); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					status = resp.StatusCode
				}
				at := time.Now()
				_ = c.SetReadDeadline(at.Add(2 * time.Second))
				_, err = br.ReadByte()
				took := time.Since(at)
				var ne net.Error
				still := errors.As(err, &ne) && ne.Timeout()
				c.Close()
				mu.Lock()
				statuses[status]++
				if still {
					open++
				}
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < total; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return statuses, open, slowest
}

// BenchmarkFigure_RefusedSockets: 5,000 sockets from one IP, 200 at a
// time (over the pending cap of 64: part of them are refused at accept),
// each sending one request that is refused (unknown key, bad origin, no
// upgrade, unknown path) and then idling. Reported: sockets the server
// left open 2 s after their refusal, the slowest close, and how long the
// server process took to be back to its baseline goroutines and fds and
// within 5 % of its live heap after a GC (its IdleTimeout is 30 s). The
// baseline is taken after a first flood of the same size, which grows
// the runtime's and net/http's high-water structures once (goroutine
// descriptors, the connection maps: heap-cold-growth-%, reported too); a
// leak would show as growth over that baseline.
func BenchmarkFigure_RefusedSockets(b *testing.B) {
	p := startServe(b, "--admin-token", figureToken)
	addr := strings.TrimSuffix(strings.TrimPrefix(p.wsURL, "ws://"), "/ws")
	time.Sleep(2 * time.Second) // let start-up settle
	serverStats(b, p)           // the first scrape sets up the metrics path
	_, _, cold := serverStats(b, p)
	refusals(b, addr, 5000, 200)
	time.Sleep(2 * time.Second)
	serverStats(b, p)
	g0, f0, h0 := serverStats(b, p)
	b.ResetTimer()
	start := time.Now()
	statuses, open, slowest := refusals(b, addr, 5000, 200)
	flood := time.Since(start)
	b.StopTimer()
	done := time.Now()
	var g, f int
	var h float64
	for {
		g, f, h = serverStats(b, p)
		if (g <= g0 && f <= f0 && h <= 1.05*h0) || time.Since(done) > 35*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	back := time.Since(done)
	b.Logf("5000 sockets in %v: statuses %v; left open %d; slowest close %v; server back after %v: goroutines %d->%d, fds %d->%d, live heap %.0f->%.0f KiB (%+.1f %%; cold start %.0f KiB)",
		flood, statuses, open, slowest, back, g0, g, f0, f, h0/1024, h/1024, 100*(h/h0-1), cold/1024)
	b.ReportMetric(float64(open), "left-open")
	b.ReportMetric(float64(slowest)/1e6, "slowest-close-ms")
	b.ReportMetric(back.Seconds(), "baseline-after-s")
	b.ReportMetric(100*(h/h0-1), "heap-over-baseline-%")
	b.ReportMetric(100*(h0/cold-1), "heap-cold-growth-%")
	b.ReportMetric(float64(g-g0), "goroutines-over-baseline")
	b.ReportMetric(float64(f-f0), "fds-over-baseline")
}
