package demofeed_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"floodgate/fanout/demofeed"
	"floodgate/internal/testdeps"

	"github.com/nats-io/nats.go"
)

// TestRun_NATS publishes through a real embedded NATS server and checks that a
// subscriber on md.> receives every channel within a second.
func TestRun_NATS(t *testing.T) {
	url := testdeps.EmbeddedNATS(t)
	pub, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	f := demofeed.New(demofeed.Options{Publish: pub.Publish})
	want := f.Subjects()
	var mu sync.Mutex
	seen := map[string]bool{}
	all := make(chan struct{})
	s, err := sub.Subscribe("md.>", func(m *nats.Msg) {
		if !json.Valid(m.Data) {
			t.Errorf("%s: invalid JSON", m.Subject)
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[m.Subject] {
			return
		}
		seen[m.Subject] = true
		if len(seen) == len(want) {
			close(all)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(time.Second):
		mu.Lock()
		t.Errorf("after 1s saw %d of %d subjects: %v", len(seen), len(want), seen)
		mu.Unlock()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		mu.Lock()
		ok := seen[w]
		mu.Unlock()
		if !ok {
			t.Errorf("no message on %s", w)
		}
	}
}
