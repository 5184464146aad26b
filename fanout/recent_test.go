package fanout

import (
	"fmt"
	"testing"
)

func chainFrames(from, to, first uint64) []*Frame {
	var out []*Frame
	prev := first
	for s := from; s <= to; s += 2 { // every other seq: another channel's in between
		out = append(out, buildFrame(`{"channel":"t","data":`, &message{payload: []byte(`{}`), seq: s, prev: prev}, nil, false))
		prev = s
	}
	return out
}

func seqs(fs []*Frame) string {
	var out []uint64
	for _, f := range fs {
		out = append(out, f.seq)
	}
	return fmt.Sprint(out)
}

// TestRecentTail: the tail serves what follows a since it knows (its first
// frame's prev or one of its seqs) up to at least upTo; a read merges in
// front of the live frames when they meet; a live frame that does not
// chain restarts it; it keeps at most recentMsgs frames.
func TestRecentTail(t *testing.T) {
	var r recent
	for _, f := range chainFrames(11, 15, 9) { // live frames 11 13 15 (prev of 11: 9)
		r.extend(f)
	}
	if _, ok := r.after(5, 15); ok {
		t.Fatal("served a since before the tail")
	}
	if fs, ok := r.after(9, 15); !ok || seqs(fs) != "[11 13 15]" {
		t.Fatalf("after 9: %s %v", seqs(fs), ok)
	}
	if fs, ok := r.after(13, 15); !ok || seqs(fs) != "[15]" {
		t.Fatalf("after 13: %s %v", seqs(fs), ok)
	}
	if fs, ok := r.after(15, 15); !ok || len(fs) != 0 {
		t.Fatalf("after the last: %s %v", seqs(fs), ok)
	}
	if _, ok := r.after(12, 15); ok {
		t.Fatal("served after a seq that is not the channel's")
	}
	if _, ok := r.after(9, 17); ok {
		t.Fatal("served a tail that does not reach upTo")
	}
	// A read from 1 (3 5 7 9 11) meets the live frames at 11.
	r.merge(chainFrames(3, 11, 1))
	if fs, ok := r.after(1, 15); !ok || seqs(fs) != "[3 5 7 9 11 13 15]" {
		t.Fatalf("merged: %s %v", seqs(fs), ok)
	}
	// A read that does not meet them (6 8: the tail's next frame after 8
	// is 9, whose prev is 7): kept as it was.
	r.merge(chainFrames(6, 8, 4))
	if fs, ok := r.after(1, 15); !ok || seqs(fs) != "[3 5 7 9 11 13 15]" {
		t.Fatalf("after a read that does not meet: %s %v", seqs(fs), ok)
	}
	// A read past everything the tail holds replaces it (still a chain).
	r.merge(chainFrames(17, 21, 15))
	if fs, ok := r.after(15, 21); !ok || seqs(fs) != "[17 19 21]" {
		t.Fatalf("after a read past the tail: %s %v", seqs(fs), ok)
	}
	r.reset()
	r.extend(chainFrames(13, 15, 11)[1])
	// A live frame that does not chain (17 lost): the tail restarts.
	r.extend(chainFrames(19, 19, 17)[0])
	if fs, ok := r.after(17, 19); !ok || seqs(fs) != "[19]" {
		t.Fatalf("restarted: %s %v", seqs(fs), ok)
	}
	// Bounded.
	var b recent
	for _, f := range chainFrames(1, 2*recentMsgs+99, 0) {
		b.extend(f)
	}
	if b.n != recentMsgs || b.at(0).seq != 101 { // 4146 frames pushed: the first 50 dropped
		t.Fatalf("%d frames from %d", b.n, b.at(0).seq)
	}
}
