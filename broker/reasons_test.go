package broker_test

import (
	"testing"

	"floodgate/broker"
)

// TestCloseReasonsComplete: every reason has its own metric label, a close
// code and, when a close frame is sent, a reason text.
func TestCloseReasonsComplete(t *testing.T) {
	seen := map[string]broker.CloseReason{}
	for r := broker.ReasonClientClosed; r <= broker.ReasonWriteError; r++ {
		label := r.String()
		if label == "" || label == "unknown" || label == "none" {
			t.Errorf("reason %d has no label", r)
		}
		if other, dup := seen[label]; dup {
			t.Errorf("reasons %d and %d share the label %q", r, other, label)
		}
		seen[label] = r
		if r.Code() == 0 {
			t.Errorf("%s has no close code", label)
		}
		if r.Code() != 1006 && r != broker.ReasonClientClosed && r.Text() == "" {
			t.Errorf("%s sends a close frame without a reason", label)
		}
	}
	if (broker.ReasonWriteError + 1).String() != "unknown" {
		t.Error("a reason after ReasonWriteError is missing from this test")
	}
}

// TestDropReasonsComplete: every drop reason has its own label.
func TestDropReasonsComplete(t *testing.T) {
	seen := map[string]bool{}
	for r := broker.DropQueueFull; r <= broker.DropConflated; r++ {
		label := r.String()
		if label == "" || label == "unknown" || seen[label] {
			t.Errorf("drop reason %d: label %q", r, label)
		}
		seen[label] = true
	}
	if (broker.DropConflated + 1).String() != "unknown" {
		t.Error("a drop reason after DropConflated is missing from this test")
	}
}
