package main

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"ferry/edge"
	"ferry/edge/certs"
	"ferry/edge/cluster"
)

// clusterFlags make `ferry full` one of a cluster's voters.
type clusterFlags struct {
	nodeID             *int32
	voters, addr       *string
	cert, key, ca      *string
	heartbeat, session *time.Duration
	rack               *string
	join               *bool
	replicationFactor  *int32
	minISR             *int32
	durableFollowers   *bool
	replicaLag         *time.Duration
	offsetsPartitions  *int32
	offsetsRF          *int32
}

func addClusterFlags(fs *pflag.FlagSet) *clusterFlags {
	return &clusterFlags{
		voters: fs.String("cluster-voters", "", "the cluster's static voter set, ID@HOST:PORT comma-separated (3 or 5 nodes, this one included), "+
			"e.g. 1@h1:9500,2@h2:9500,3@h3:9500; empty: this node is alone, as before"),
		nodeID: fs.Int32("cluster-node-id", 0, "this node's id among --cluster-voters (also its Kafka broker id)"),
		addr:   fs.String("cluster-addr", "", "the cluster listener's address (raft and the controller's requests); empty: this node's address in --cluster-voters"),
		cert:   fs.String("cluster-tls-cert", "", "PEM certificate (ferry certs node) this node serves the cluster listener with and shows its peers"),
		key:    fs.String("cluster-tls-key", "", "PEM private key for --cluster-tls-cert"),
		ca: fs.String("cluster-tls-ca", "", "PEM CA bundle the peers' certificates must be signed by (mutual TLS); "+
			"without the three cluster-tls flags the cluster listener takes loopback addresses only"),
		heartbeat: fs.Duration("cluster-heartbeat-interval", cluster.DefaultHeartbeatInterval, "how often this broker tells the controller it lives"),
		session:   fs.Duration("cluster-session-timeout", cluster.DefaultSessionTimeout, "a broker silent this long is fenced by the controller: it leads nothing until it returns"),
		rack:      fs.String("cluster-rack", "", "this broker's rack, as Kafka clients see it"),
		join: fs.Bool("cluster-join", false, "this node joins a cluster that runs already: it does not bootstrap a voter set of its own "+
			"and waits until a voter adds it (ferry cluster add-voter); ignored once it has raft state"),
		replicationFactor: fs.Int32("default-replication-factor", 0, fmt.Sprintf("replicas of a topic created without one (Kafka's default.replication.factor), at most %d; "+
			"0: min(3, voters), so one node may be down while another fails", cluster.MaxReplicationFactor)),
		minISR: fs.Int32("min-insync-replicas", 0, "in-sync replicas an acks=all record must reach before it is acknowledged, for topics without min.insync.replicas "+
			"(capped at a topic's replication factor); 0: min(2, --default-replication-factor). Set by the controller, so give every node the same"),
		durableFollowers: fs.Bool("durable-followers", false, "acks=all waits until every in-sync replica has made the record durable under the topic's flush.policy "+
			"(followers sync what they copied before they fetch again); off, it waits until every in-sync replica has it, durable on the leader"),
		replicaLag: fs.Duration("replica-lag-time", 30*time.Second, "a follower that has not caught up to its leader's end for this long leaves the in-sync set (Kafka's replica.lag.time.max.ms)"),
		offsetsPartitions: fs.Int32("offsets-topic-partitions", edge.DefaultOffsetsPartitions, "partitions of __consumer_offsets, where the cluster keeps committed group offsets "+
			"(Kafka's offsets.topic.num.partitions); a group is coordinated by the leader of its partition. Used when the topic is created, never changed after: give every node the same"),
		offsetsRF: fs.Int32("offsets-topic-replication-factor", 0, "replicas of __consumer_offsets (Kafka's offsets.topic.replication.factor); 0: the cluster's default replication factor"),
	}
}

// options are the node's ClusterOptions, nil when no voters are given.
func (f *clusterFlags) options() (*edge.ClusterOptions, error) {
	if *f.voters == "" {
		return nil, nil
	}
	voters, err := cluster.ParseVoters(*f.voters)
	if err != nil {
		return nil, usagef("--cluster-voters: %v", err)
	}
	co := &edge.ClusterOptions{NodeID: *f.nodeID, Voters: voters, ListenAddr: *f.addr,
		HeartbeatInterval: *f.heartbeat, SessionTimeout: *f.session, Rack: *f.rack,
		DefaultReplicationFactor: *f.replicationFactor, MinInsyncReplicas: *f.minISR, Join: *f.join,
		DurableFollowers: *f.durableFollowers, ReplicaLagTime: *f.replicaLag,
		OffsetsPartitions: *f.offsetsPartitions, OffsetsReplicationFactor: *f.offsetsRF}
	if *f.replicaLag <= 0 {
		return nil, usagef("--replica-lag-time %v: want a positive duration", *f.replicaLag)
	}
	if n := *f.offsetsPartitions; n < 1 || n > 1000 {
		return nil, usagef("--offsets-topic-partitions %d: want 1 to 1000", n)
	}
	if rf := *f.offsetsRF; rf < 0 || rf > cluster.MaxReplicationFactor || rf > int32(len(voters)) {
		return nil, usagef("--offsets-topic-replication-factor %d: want 1 to %d and at most the voters (0: the default replication factor)", rf, min(cluster.MaxReplicationFactor, int32(len(voters))))
	}
	if rf := *f.replicationFactor; rf < 0 || rf > cluster.MaxReplicationFactor {
		return nil, usagef("--default-replication-factor %d: want 1 to %d (0: min(3, voters))", rf, cluster.MaxReplicationFactor)
	}
	if rf := *f.replicationFactor; rf > int32(len(voters)) {
		return nil, usagef("--default-replication-factor %d: the cluster has %d voters", rf, len(voters))
	}
	rf := *f.replicationFactor
	if rf == 0 {
		rf = cluster.DefaultReplicationFactor(len(voters))
	}
	if m := *f.minISR; m < 0 || m > rf {
		return nil, usagef("--min-insync-replicas %d: want 1 to the default replication factor %d (0: min(2, it))", m, rf)
	}
	found := false
	for _, v := range voters {
		found = found || v.ID == co.NodeID
	}
	if !found {
		return nil, usagef("--cluster-node-id %d is not among --cluster-voters", co.NodeID)
	}
	set := 0
	for _, s := range []string{*f.cert, *f.key, *f.ca} {
		if s != "" {
			set++
		}
	}
	switch set {
	case 0:
		return co, nil
	case 3:
	default:
		return nil, usagef("--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together")
	}
	pair, err := tls.LoadX509KeyPair(*f.cert, *f.key)
	if err != nil {
		return nil, err
	}
	pool, err := certs.LoadPool(*f.ca)
	if err != nil {
		return nil, err
	}
	co.ServerTLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	co.ClientTLS = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return co, nil
}
