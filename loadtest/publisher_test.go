package loadtest_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"floodgate/internal/testdeps"
	"floodgate/loadtest"

	"github.com/nats-io/nats.go"
)

func TestAppendPayload(t *testing.T) {
	for _, size := range []int{loadtest.MinPayloadSize, 100, 200, 4096} {
		p := loadtest.AppendPayload(nil, time.Now().UnixNano(), 1234567890, size)
		if len(p) != size {
			t.Fatalf("size %d: got %d bytes", size, len(p))
		}
		var v struct {
			TS  int64  `json:"ts"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(p, &v); err != nil || v.Seq != 1234567890 || v.TS == 0 {
			t.Fatalf("size %d: %s: %v", size, p, err)
		}
	}
	// Too small a size still yields a valid payload.
	if p := loadtest.AppendPayload(nil, 1, 1, 5); !json.Valid(p) {
		t.Fatalf("%s", p)
	}
}

func TestAppendPayloadAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(1000, func() { buf = loadtest.AppendPayload(buf[:0], 1, 2, 200) }); a != 0 {
		t.Fatalf("AppendPayload: %v allocs", a)
	}
}

// TestPublisher_RateAndCounts publishes at 1000/s for 300 ms over 3
// subjects and checks the rate, the per-subject counts against what a NATS
// subscriber received, and per-subject seq order.
func TestPublisher_RateAndCounts(t *testing.T) {
	url := testdeps.EmbeddedNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subjects := []string{"md.trades.A", "md.trades.B", "md.trades.C"}
	var mu sync.Mutex
	got := map[string]uint64{}
	last := map[string]uint64{}
	sub, err := nc.Subscribe("md.trades.*", func(m *nats.Msg) {
		var v struct {
			Seq uint64 `json:"seq"`
		}
		if len(m.Data) != 150 || json.Unmarshal(m.Data, &v) != nil {
			t.Errorf("bad payload %q", m.Data)
		}
		mu.Lock()
		defer mu.Unlock()
		if v.Seq != last[m.Subject]+1 {
			t.Errorf("%s: seq %d after %d", m.Subject, v.Seq, last[m.Subject])
		}
		last[m.Subject] = v.Seq
		got[m.Subject]++
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = nc.Flush()

	p, err := loadtest.NewPublisher(loadtest.PublisherOptions{Conn: nc, Subjects: subjects, Rate: 1000, Size: 150})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Run(context.Background(), start, start.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	total := p.Total()
	if total < 250 || total > 330 {
		t.Fatalf("published %d in 300 ms at 1000/s", total)
	}
	measured := p.Measured()
	var sum uint64
	for _, n := range measured {
		sum += n
	}
	if sum != total {
		t.Fatalf("measured %v, total %d", measured, total)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		ok := got[subjects[0]] == measured[0] && got[subjects[1]] == measured[1] && got[subjects[2]] == measured[2]
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %v, published %v", got, measured)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := loadtest.NewPublisher(loadtest.PublisherOptions{Conn: nc, Subjects: subjects, Size: 10}); err == nil {
		t.Fatal("size below minimum accepted")
	}
}
