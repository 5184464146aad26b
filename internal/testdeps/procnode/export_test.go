package procnode

import "io"

// Log ring bounds, for the tests.
const (
	LogKeep = logKeep
	LogDrop = logDrop
)

// ScanLog runs a fresh node's log scanner over r and returns the node and
// the serving addresses it found (ok false: none).
func ScanLog(r io.Reader) (n *Node, addrs [2]string, ok bool) {
	n = &Node{}
	serving := make(chan [2]string, 1)
	n.scanLog(r, serving)
	select {
	case addrs = <-serving:
		return n, addrs, true
	default:
		return n, addrs, false
	}
}
