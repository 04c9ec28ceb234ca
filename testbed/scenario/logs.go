package scenario

import (
	"bufio"
	"encoding/json"
	"os"
)

// logLine is what the runner reads of a node's JSON log lines.
type logLine struct {
	Msg    string `json:"msg"`
	Level  string `json:"level"`
	Edge   string `json:"edge"`
	Reason string `json:"reason"`
	Err    string `json:"err"`
}

// scanLog calls fn for every JSON line of a node's log (all its starts).
func scanLog(path string, fn func(logLine)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			fn(l)
		}
	}
	return sc.Err()
}

// mirrorTrouble reads the nodes' logs for what the mirror went through:
// the connections the center refused (the edge's chunk failed its checks,
// say), and each gateway's reconnections.
func (r *runner) mirrorTrouble(rep *Report) {
	_ = scanLog(r.center.logPath(), func(l logLine) {
		if l.Msg == "mirror: refused; closing the edge's connection" {
			rep.CenterRefusals = append(rep.CenterRefusals, l.Edge+": "+l.Reason+": "+l.Err)
		}
	})
	for i, g := range r.gws {
		_ = scanLog(g.proc.logPath(), func(l logLine) {
			if l.Msg == "mirror: link down; reconnecting" {
				rep.Gateways[i].MirrorReconnects++
			}
		})
	}
}
