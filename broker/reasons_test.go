package broker_test

import (
	"fmt"
	"os"
	"strings"
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

// TestCloseReasonsDocumented: every close frame the broker sends (code and
// reason text) is in the table of codes of docs/protocol.md.
func TestCloseReasonsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "\n## Codes\n")
	sec, _, _ = strings.Cut(sec, "\n## ")
	for r := broker.ReasonClientClosed; r <= broker.ReasonWriteError; r++ {
		if r.Text() == "" {
			continue // no close frame of ours
		}
		row := fmt.Sprintf("| %d | close |", r.Code())
		i := strings.Index(sec, row)
		if i < 0 {
			t.Errorf("%s: no row %q in docs/protocol.md ## Codes", r, row)
			continue
		}
		line, _, _ := strings.Cut(sec[i:], "\n")
		if !strings.Contains(line, "`"+r.Text()+"`") {
			t.Errorf("%s: close %d row lacks `%s`", r, r.Code(), r.Text())
		}
	}
}
