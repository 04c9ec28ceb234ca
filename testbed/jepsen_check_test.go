package testbed

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
)

// The Jepsen-style checker: pure functions over what the clients logged
// and what the cluster holds at the end. Each returns the problems it
// found, worst first; none is a pass. jepsen_check_unit_test.go feeds
// them synthetic histories that must fail.

// tp names a topic partition.
type tp struct {
	Topic     string
	Partition int32
}

func (p tp) String() string { return fmt.Sprintf("%s-%d", p.Topic, p.Partition) }

// op is one record at an offset: acknowledged to the producer, observed by
// a consumer, or read back at the end.
type op struct {
	tp
	Offset int64
	Value  string
	By     string // who saw it: "producer", a consumer's name, "final"
}

// history is what a run logged.
type history struct {
	Acked    []op
	Observed []op
	// Final is every record read back from every partition after healing:
	// partition -> offset -> value.
	Final map[tp]map[int64]string
}

// checkHistory runs every record-level check.
func checkHistory(h history) []string {
	var out []string
	out = append(out, checkAcked(h.Acked, h.Final)...)
	out = append(out, checkSingleValue("acknowledged", h.Acked)...)
	out = append(out, checkDuplicates(h.Final)...)
	out = append(out, checkObserved(h.Observed, h.Final)...)
	return out
}

// checkAcked: every acknowledged record is in the final read at the
// partition and offset it was acknowledged with. Found elsewhere it is a
// wrong offset; found nowhere, a lost acknowledgement.
func checkAcked(acked []op, final map[tp]map[int64]string) []string {
	where := finalIndex(final)
	var out []string
	for _, a := range acked {
		got, ok := final[a.tp][a.Offset]
		if ok && got == a.Value {
			continue
		}
		if at := where[a.Value]; len(at) > 0 {
			out = append(out, fmt.Sprintf("wrong offset: %q acknowledged at %s@%d, found at %v", a.Value, a.tp, a.Offset, at))
		} else {
			out = append(out, fmt.Sprintf("lost acknowledgement: %q acknowledged at %s@%d is gone (there now: %q)", a.Value, a.tp, a.Offset, got))
		}
	}
	return out
}

// checkSingleValue: no two events of kind name one offset with different
// values (two leaders acknowledging one offset, or two consumers shown
// different records there).
func checkSingleValue(kind string, ops []op) []string {
	type key struct {
		tp
		off int64
	}
	seen := map[key]op{}
	var out []string
	for _, o := range ops {
		k := key{o.tp, o.Offset}
		if prev, ok := seen[k]; ok && prev.Value != o.Value {
			out = append(out, fmt.Sprintf("two values %s at %s@%d: %q (%s) and %q (%s)", kind, o.tp, o.Offset, prev.Value, prev.By, o.Value, o.By))
			continue
		}
		seen[k] = o
	}
	return out
}

// checkDuplicates: with unique values from an idempotent producer, no
// value is stored twice.
func checkDuplicates(final map[tp]map[int64]string) []string {
	var out []string
	for v, at := range finalIndex(final) {
		if len(at) > 1 {
			out = append(out, fmt.Sprintf("duplicate: %q stored %d times, at %v", v, len(at), at))
		}
	}
	sort.Strings(out)
	return out
}

// checkObserved: nothing a consumer observed later disappears or changes
// (a dirty read: a record served above the committed end, then truncated
// away), and consumers agree with one another.
func checkObserved(observed []op, final map[tp]map[int64]string) []string {
	var out []string
	for _, o := range observed {
		got, ok := final[o.tp][o.Offset]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("dirty read: %s observed %q at %s@%d, which is gone", o.By, o.Value, o.tp, o.Offset))
		case got != o.Value:
			out = append(out, fmt.Sprintf("dirty read: %s observed %q at %s@%d, which now holds %q", o.By, o.Value, o.tp, o.Offset, got))
		}
	}
	return append(out, checkSingleValue("observed", observed)...)
}

// finalIndex maps each value to where the final read found it.
func finalIndex(final map[tp]map[int64]string) map[string][]string {
	where := map[string][]string{}
	for p, recs := range final {
		for off, v := range recs {
			where[v] = append(where[v], fmt.Sprintf("%s@%d", p, off))
		}
	}
	for _, at := range where {
		sort.Strings(at)
	}
	return where
}

// replicaBatch is one batch as a replica's segment file holds it.
type replicaBatch struct {
	BaseOffset, LastOffset int64
	Bytes                  []byte // the whole batch, as on disk
}

// checkReplicas: every replica of a partition holds, below the high
// watermark hw, the same batches byte for byte, leader epochs masked; and
// each holds all of them (a replica short of hw is missing committed
// records). replicas maps a node's name to its batches in offset order.
func checkReplicas(p tp, hw int64, replicas map[string][]replicaBatch) []string {
	names := make([]string, 0, len(replicas))
	for n := range replicas {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil
	}
	below := func(bs []replicaBatch) []replicaBatch {
		var out []replicaBatch
		for _, b := range bs {
			if b.BaseOffset < hw {
				out = append(out, b)
			}
		}
		return out
	}
	var out []string
	ref, refName := below(replicas[names[0]]), names[0]
	for _, n := range names {
		bs := below(replicas[n])
		if end := int64(-1); len(bs) > 0 {
			end = bs[len(bs)-1].LastOffset
			if end < hw-1 {
				out = append(out, fmt.Sprintf("replica %s of %s ends at %d, below the high watermark %d", n, p, end+1, hw))
			}
		} else if hw > 0 {
			out = append(out, fmt.Sprintf("replica %s of %s holds nothing below the high watermark %d", n, p, hw))
		}
		if n == refName {
			continue
		}
		for i := 0; i < len(bs) && i < len(ref); i++ {
			a, b := ref[i], bs[i]
			if a.BaseOffset != b.BaseOffset || a.LastOffset != b.LastOffset || !bytes.Equal(maskEpochs(a.Bytes), maskEpochs(b.Bytes)) {
				out = append(out, fmt.Sprintf("replicas diverge below the high watermark %d of %s: batch %d is [%d,%d] on %s, [%d,%d] on %s, bytes differ: %v",
					hw, p, i, a.BaseOffset, a.LastOffset, refName, b.BaseOffset, b.LastOffset, n, !bytes.Equal(maskEpochs(a.Bytes), maskEpochs(b.Bytes))))
				break
			}
		}
	}
	return out
}

// checkURP: the under-replicated-partitions metric matches what the
// metadata says (want: partitions whose in-sync set is smaller than their
// replica set). perNode is the metric on each live node. Either every node
// reports the cluster's count (a gauge derived from the metadata image) or
// each reports the partitions it leads (Kafka's per-broker gauge, summing
// to the count); both are accepted.
func checkURP(perNode map[string]float64, want int) []string {
	if len(perNode) == 0 {
		return []string{"no node reported the under-replicated-partitions metric"}
	}
	sum, allEqual := 0.0, true
	for _, v := range perNode {
		sum += v
		allEqual = allEqual && int(v) == want
	}
	if allEqual || int(sum) == want {
		return nil
	}
	return []string{fmt.Sprintf("under-replicated partitions: metric %v, the metadata says %d", perNode, want)}
}
