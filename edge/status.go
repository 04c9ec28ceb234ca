package edge

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"strings"

	"ferry/edge/statuspage"
	"ferry/mirror"
)

// startStatus starts the status page's sampler: one sample now, then one
// every Options.StatusInterval, the last hour kept in memory. It reads
// the log, the front ends and the mirror, so it starts after them and
// stopStatus stops it before them.
func (n *Node) startStatus() {
	info := statuspage.Node{Mode: n.opts.Mode, KafkaAddr: n.KafkaAddr(), MQTTAddrs: n.MQTTAddrs(), MirrorAddr: n.MirrorAddr()}
	if info.Mode == "" {
		info.Mode = "edge"
	}
	if n.sender != nil {
		info.MirrorTo, info.EdgeID = n.sender.Target(), n.sender.EdgeID()
	}
	n.status = statuspage.NewSampler(info, n.opts.StatusInterval, n.collectStatus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.stopStat = func() { cancel(); <-done }
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		n.status.Run(ctx)
	}()
}

// stopStatus stops the sampler and waits for it (nothing when it never
// started).
func (n *Node) stopStatus() {
	if n.stopStat != nil {
		n.stopStat()
	}
}

// collectStatus reads the node's figures for one sample.
func (n *Node) collectStatus() statuspage.Sample {
	var s statuspage.Sample
	ends := map[string][]int64{} // topic → end offset per partition
	for _, t := range n.log.Topics() {
		pe := make([]int64, t.Partitions)
		for p := range t.Partitions {
			if part, err := n.log.Partition(t.Name, p); err == nil {
				pe[p] = part.EndOffset()
			}
		}
		ends[t.Name] = pe
		if !strings.HasPrefix(t.Name, "__") {
			for _, e := range pe {
				s.RecordsIn += e
			}
		}
	}
	s.DiskBytes = n.log.Size()
	s.DiskBudget, s.AppendsBlocked = n.log.DiskBudget()
	if n.kafka != nil {
		s.KafkaOut = n.kafka.RecordsServed()
	}
	if n.mqtt != nil {
		s.MQTTOut = n.mqtt.Delivered()
		s.DevicesOnline = n.mqtt.Connected()
	}
	if n.groups != nil {
		s.ConsumerLag, s.GroupLag = n.consumerLag(ends)
	}
	if n.sender != nil {
		st := n.sender.Status()
		m := &statuspage.MirrorSample{LinkUp: st.LinkUp}
		for _, p := range st.Partitions {
			m.BacklogRecords += p.BacklogRecords
			m.BacklogBytes += p.BacklogBytes
			m.OldestAge = max(m.OldestAge, p.OldestUnshippedAge)
		}
		s.Mirror = m
	}
	if n.receiver != nil {
		s.Fleet = fleetSample(n.receiver.Status())
	}
	return s
}

// fleetSample sums up a center's edges for one sample, keeping the lag of
// the statuspage.MaxEdges edges furthest behind.
func fleetSample(st mirror.ReceiverStatus) *statuspage.FleetSample {
	f := &statuspage.FleetSample{EdgeLag: map[string]int64{}}
	edges := st.Edges
	for _, e := range edges {
		f.Edges++
		if e.Connected {
			f.Connected++
		}
		f.LagRecords += e.LagRecords
	}
	edges = slices.Clone(edges)
	slices.SortStableFunc(edges, func(a, b mirror.EdgeStatus) int { return cmp.Compare(b.LagRecords, a.LagRecords) })
	for _, e := range edges[:min(len(edges), statuspage.MaxEdges)] {
		if e.LagKnown {
			f.EdgeLag[e.Edge] = e.LagRecords
		}
	}
	return f
}

// consumerLag sums, per group, the records between each committed offset
// and its partition's end; partitions that no longer exist count nothing.
// It returns the total and the largest statuspage.MaxGroups groups.
func (n *Node) consumerLag(ends map[string][]int64) (int64, map[string]int64) {
	committed, err := n.groups.AllCommitted()
	if err != nil {
		n.logger.Warn("status page: reading committed offsets", "err", err)
		return 0, nil
	}
	per := map[string]int64{}
	var total int64
	for _, c := range committed {
		pe := ends[c.Topic]
		if c.Partition < 0 || int(c.Partition) >= len(pe) || c.Offset < 0 {
			continue
		}
		lag := max(pe[c.Partition]-c.Offset, 0)
		per[c.Group] += lag
		total += lag
	}
	if len(per) <= statuspage.MaxGroups {
		return total, per
	}
	names := make([]string, 0, len(per))
	for g := range per {
		names = append(names, g)
	}
	sort.Slice(names, func(i, j int) bool {
		if per[names[i]] != per[names[j]] {
			return per[names[i]] > per[names[j]]
		}
		return names[i] < names[j]
	})
	top := map[string]int64{}
	for _, g := range names[:statuspage.MaxGroups] {
		top[g] = per[g]
	}
	return total, top
}
