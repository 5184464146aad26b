package loadtest_test

import (
	"context"
	"testing"
	"time"

	"floodgate/loadtest"
)

// TestResume_RealBroker: the resume scenario against a real node with
// history (the embedded NATS): every client resumes recovered, gets what
// it missed and the live frames with no gap, duplicate or loss, and the
// report has the storm's figures; the gate passes.
func TestResume_RealBroker(t *testing.T) {
	t.Parallel()
	n := startRoomyNode(t)
	rep, err := loadtest.Run(context.Background(), n.target(loadtest.Config{
		Scenario: loadtest.ScenarioResume,
		Conns:    50, Rate: 100, Warmup: 300 * time.Millisecond, Away: 500 * time.Millisecond, Duration: 300 * time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Resume
	if r == nil || rep.ConnectionsOK != 50 || r.Resumed != 50 || r.Recovered != 50 || r.Failed != 0 {
		t.Fatalf("resume report %+v, first subscribes ok %d", r, rep.ConnectionsOK)
	}
	if r.Gaps != 0 || r.Duplicates != 0 || r.Lost != 0 {
		t.Fatalf("gaps %d, duplicates %d, lost %d", r.Gaps, r.Duplicates, r.Lost)
	}
	if r.Missed < 40 || r.Replayed < 50*40 || r.LiveFrames == 0 || r.LastLiveS <= 0 || r.StormCPUS <= 0 {
		t.Fatalf("missed %d, replayed %d, live %d, last live %v s, storm CPU %v", r.Missed, r.Replayed, r.LiveFrames, r.LastLiveS, r.StormCPUS)
	}
	if err := rep.Gate(-1, -1); err != nil {
		t.Fatal(err)
	}
}

// TestSeqPrevOf: the broker's seq and prev follow the data, which may hold
// a "seq" of its own.
func TestSeqPrevOf(t *testing.T) {
	for frame, want := range map[string][3]uint64{
		`{"channel":"trades","data":{"ts":1,"seq":5},"seq":120,"prev":99}`: {120, 99, 1},
		`{"channel":"trades","data":{"seq":7}}`:                            {0, 0, 0},
		`{"channel":"trades","data":[],"seq":3,"snapshot":true}`:           {0, 0, 0},
	} {
		seq, prev, ok := loadtest.SeqPrevOf([]byte(frame))
		if seq != want[0] || prev != want[1] || ok != (want[2] == 1) {
			t.Errorf("%s: %d %d %v", frame, seq, prev, ok)
		}
	}
}
