package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	flog "ferry/log"
)

// lagCollector reports consumer groups at scrape time: each committed
// offset, the lag behind its partition's end offset, and each group's
// members. Nothing is kept between scrapes and nothing runs between them.
type lagCollector struct {
	groups *Groups
	log    *flog.Log

	committed, lag, members *prometheus.Desc
	// The replicated coordinator's offsets topic (groupsrepl.go); 0 alone.
	loaded, snapshots, skipped *prometheus.Desc
}

func newLagCollector(g *Groups, l *flog.Log) *lagCollector {
	labels := []string{"group", "topic", "partition"}
	return &lagCollector{groups: g, log: l,
		committed: prometheus.NewDesc("ferry_kafka_consumer_group_committed_offset",
			"The offset a consumer group committed for a partition (the next record it will read).", labels, nil),
		lag: prometheus.NewDesc("ferry_kafka_consumer_group_lag",
			"Records of a partition after a consumer group's committed offset: the partition's end offset minus the committed offset (0 if the group is ahead).", labels, nil),
		members: prometheus.NewDesc("ferry_kafka_consumer_group_members", "Members of a consumer group (0: none running).", []string{"group"}, nil),
		loaded: prometheus.NewDesc("ferry_kafka_offsets_partitions_loaded",
			"Partitions of __consumer_offsets this broker leads and has loaded: it coordinates their groups (a cluster node; 0 alone).", nil, nil),
		snapshots: prometheus.NewDesc("ferry_kafka_offsets_snapshots_total",
			"Snapshots of the live committed offsets written to a __consumer_offsets partition, each followed by advancing its start.", nil, nil),
		skipped: prometheus.NewDesc("ferry_kafka_offsets_records_skipped_total",
			"Records of __consumer_offsets a loading coordinator could not read (malformed, or a type or version it does not know) and skipped.", nil, nil),
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.committed
	ch <- c.lag
	ch <- c.members
	ch <- c.loaded
	ch <- c.snapshots
	ch <- c.skipped
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	type part struct {
		topic string
		id    int32
	}
	ends := map[part]int64{} // -1: no such partition any more
	end := func(topic string, id int32) int64 {
		k := part{topic, id}
		if e, ok := ends[k]; ok {
			return e
		}
		e := int64(-1)
		if p, err := c.log.Partition(topic, id); err == nil {
			e = p.EndOffset()
		}
		ends[k] = e
		return e
	}
	loaded := 0
	if rs, ok := c.groups.store.(*replStore); ok {
		loaded = rs.loadedPartitions()
	}
	ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, float64(loaded))
	ch <- prometheus.MustNewConstMetric(c.snapshots, prometheus.CounterValue, float64(c.groups.offsetsSnapshots.Load()))
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(c.groups.offsetsSkipped.Load()))
	entries, err := c.groups.AllCommitted() // read first, emitted after: no bbolt transaction waits on ch
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lag, err)
		return
	}
	withOffsets := map[string]bool{}
	for _, e := range entries {
		if e.Offset < 0 {
			continue // committed "no offset"
		}
		withOffsets[e.Group] = true
		ps := strconv.Itoa(int(e.Partition))
		ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, float64(e.Offset), e.Group, e.Topic, ps)
		if end := end(e.Topic, e.Partition); end >= 0 {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(end-e.Offset, 0)), e.Group, e.Topic, ps)
		}
	}
	members := map[string]int{}
	c.groups.mu.Lock()
	for id, gr := range c.groups.groups {
		members[id] = len(gr.members)
	}
	c.groups.mu.Unlock()
	for id := range withOffsets {
		if _, ok := members[id]; !ok {
			members[id] = 0
		}
	}
	for id, n := range members {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(n), id)
	}
}
