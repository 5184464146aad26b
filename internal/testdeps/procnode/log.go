package procnode

import (
	"bufio"
	"encoding/json"
	"io"
	"strings"
)

// Log ring bounds: a node keeps at most logKeep lines and drops the oldest
// logDrop at once when it is full; a failed test shows the last
// failureTail.
const (
	logKeep     = 400
	logDrop     = 200
	failureTail = 40
)

// scanLog keeps the lines of r (a JSON log) and sends the listen and API
// addresses of the first "floodgate serving" event to serving (buffered:
// it never blocks). It returns at the end of r.
func (n *Node) scanLog(r io.Reader, serving chan<- [2]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		n.addLog(line)
		var ev struct {
			Message   string `json:"message"`
			Listen    string `json:"listen"`
			APIListen string `json:"api_listen"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "floodgate serving" {
			select {
			case serving <- [2]string{ev.Listen, ev.APIListen}:
			default:
			}
		}
	}
}

func (n *Node) addLog(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.logs = append(n.logs, line)
	if len(n.logs) > logKeep {
		n.logs = append(n.logs[:0], n.logs[logDrop:]...)
	}
}

// Tail returns the node's last k log lines (at most the 200 to 400 it
// keeps), joined by newlines.
func (n *Node) Tail(k int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	from := max(len(n.logs)-k, 0)
	return strings.Join(n.logs[from:], "\n")
}
