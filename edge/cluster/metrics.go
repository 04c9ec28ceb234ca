package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The quorum's metrics (ferry_cluster_*), read from the node at scrape
// time.
var (
	descController = prometheus.NewDesc("ferry_cluster_controller_id", "The controller's node id as this node sees it (-1: none known).", nil, nil)
	descIsCtrl     = prometheus.NewDesc("ferry_cluster_is_controller", "1 while this node is the controller (the raft leader, caught up).", nil, nil)
	descRaftState  = prometheus.NewDesc("ferry_cluster_raft_state", "1 for this node's raft state (Follower, Candidate, Leader, Shutdown).", []string{"state"}, nil)
	descTerm       = prometheus.NewDesc("ferry_cluster_raft_term", "This node's raft term.", nil, nil)
	descApplied    = prometheus.NewDesc("ferry_cluster_metadata_applied_index", "The raft index of the last metadata record this node applied.", nil, nil)
	descApplyLag   = prometheus.NewDesc("ferry_cluster_metadata_apply_lag", "Committed metadata records this node has not applied yet.", nil, nil)
	descBrokers    = prometheus.NewDesc("ferry_cluster_brokers", "Brokers in the metadata image, by state (unfenced, fenced).", []string{"state"}, nil)
	descOffline    = prometheus.NewDesc("ferry_cluster_offline_partitions", "Partitions with no leader (no in-sync or eligible replica live), reported by the controller (0 elsewhere, as Kafka's OfflinePartitionsCount).", nil, nil)
	descURP        = prometheus.NewDesc("ferry_cluster_under_replicated_partitions", "Partitions this broker leads with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions).", nil, nil)
	descUnderMin   = prometheus.NewDesc("ferry_cluster_under_min_isr_partitions", "Partitions this broker leads with fewer in-sync replicas than min.insync.replicas: acks=all is refused (Kafka's UnderMinIsrPartitionCount).", nil, nil)
)

// Collector is the node's metrics for a prometheus registry.
func (n *Node) Collector() prometheus.Collector { return nodeCollector{n} }

type nodeCollector struct{ n *Node }

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descController, descIsCtrl, descRaftState, descTerm, descApplied, descApplyLag, descBrokers, descOffline, descURP, descUnderMin} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.raftStatus()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descController, float64(st.Controller))
	gauge(descIsCtrl, boolFloat(c.n.serving()))
	for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		gauge(descRaftState, boolFloat(st.State == s), s)
	}
	gauge(descTerm, float64(st.Term))
	gauge(descApplied, float64(st.AppliedIndex))
	lag := float64(0)
	if st.CommitIndex > st.AppliedIndex {
		lag = float64(st.CommitIndex - st.AppliedIndex)
	}
	gauge(descApplyLag, lag)
	var all, live int
	var mine, cluster ReplicationCounts
	c.n.fsm.View(func(im *Image) {
		all, live = len(im.BrokerIDs(false)), len(im.BrokerIDs(true))
		mine = im.Replication(c.n.ID())
		cluster = im.Replication(NoLeader)
	})
	gauge(descBrokers, float64(live), "unfenced")
	gauge(descBrokers, float64(all-live), "fenced")
	offline := 0
	if c.n.serving() {
		offline = cluster.Offline
	}
	gauge(descOffline, float64(offline))
	gauge(descURP, float64(mine.UnderReplicated))
	gauge(descUnderMin, float64(mine.UnderMinISR))
}

// UnderReplicated is the number of partitions this broker leads with
// fewer in-sync replicas than replicas: what edge's
// ferry_under_replicated_partitions reports in a cluster.
func (n *Node) UnderReplicated() int {
	c := 0
	n.fsm.View(func(im *Image) { c = im.Replication(n.ID()).UnderReplicated })
	return c
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
