package adminapi

import (
	"net/http"
	"sort"
	"strconv"

	"ferry/edge/cluster"
)

// ClusterView is GET /api/cluster: the cluster as this node sees it.
type ClusterView struct {
	cluster.Status
	Brokers    []ClusterBrokerView `json:"brokers"`
	Topics     int                 `json:"topics"`
	Partitions int                 `json:"partitions"`
	// Offline are the partitions with no leader ("topic-partition").
	Offline []string `json:"offline_partitions"`
}

// ClusterBrokerView is one broker of ClusterView.
type ClusterBrokerView struct {
	ID        int32             `json:"id"`
	Endpoints map[string]string `json:"endpoints"`
	Rack      string            `json:"rack,omitempty"`
	Fenced    bool              `json:"fenced"`
	// Replicas and Leads count the partitions it holds and leads.
	Replicas int `json:"replicas"`
	Leads    int `json:"leads"`
}

// clusterView builds the view from the node's copy of the metadata.
func clusterView(c Cluster) ClusterView {
	im := c.Image()
	v := ClusterView{Status: c.Status(), Topics: len(im.Topics), Offline: []string{}}
	replicas, leads := im.PartitionsPerBroker()
	for _, id := range im.BrokerIDs(false) {
		b := im.Brokers[id]
		v.Brokers = append(v.Brokers, ClusterBrokerView{ID: id, Endpoints: b.Endpoints, Rack: b.Rack, Fenced: b.Fenced, Replicas: replicas[id], Leads: leads[id]})
	}
	for _, name := range im.TopicNames() {
		for i, p := range im.Topics[name].Partitions {
			v.Partitions++
			if p.Leader == cluster.NoLeader {
				v.Offline = append(v.Offline, name+"-"+strconv.Itoa(i))
			}
		}
	}
	sort.Strings(v.Offline)
	return v
}

func (s *server) handleCluster(w http.ResponseWriter, r *http.Request) {
	c := s.b.Cluster()
	if c == nil {
		writeError(w, http.StatusNotFound, "this node is not in a cluster (ferry full --cluster-voters)")
		return
	}
	writeJSON(w, http.StatusOK, clusterView(c))
}
