package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// brokerSample is what the broker's Prometheus /metrics says about its
// process.
type brokerSample struct {
	rssBytes   float64 // process_resident_memory_bytes
	cpuSeconds float64 // process_cpu_seconds_total
	allocBytes float64 // go_memstats_alloc_bytes_total (0 when absent)
}

// sampleBroker reads the process metrics from a Prometheus text endpoint.
func sampleBroker(ctx context.Context, url string) (brokerSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return brokerSample{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return brokerSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return brokerSample{}, fmt.Errorf("loadtest: metrics: status %d", resp.StatusCode)
	}
	return parseProcessMetrics(bufio.NewScanner(resp.Body))
}

// parseProcessMetrics picks the two process gauges out of Prometheus text
// exposition lines.
func parseProcessMetrics(sc *bufio.Scanner) (brokerSample, error) {
	var s brokerSample
	var seen int
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "process_resident_memory_bytes":
			dst = &s.rssBytes
		case "process_cpu_seconds_total":
			dst = &s.cpuSeconds
		case "go_memstats_alloc_bytes_total":
			dst = &s.allocBytes
			seen-- // optional
		default:
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		f, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return s, fmt.Errorf("loadtest: metrics: %s: %w", name, err)
		}
		*dst = f
		seen++
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if seen < 2 {
		return s, fmt.Errorf("loadtest: metrics: process_resident_memory_bytes or process_cpu_seconds_total missing")
	}
	return s, nil
}

// selfCPU is the user plus system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
