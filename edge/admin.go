package edge

import (
	"net/http"

	"ferry/devices"
	"ferry/edge/adminapi"
	"ferry/ingest/kafka"
	flog "ferry/log"
	"ferry/mirror"
)

// adminHandler serves the admin listener (package adminapi: metrics,
// health, the status page, the JSON admin API behind the token).
func (n *Node) adminHandler() http.Handler {
	return adminapi.Handler(adminBackend{n}, adminapi.Config{Token: n.opts.AdminToken, Metrics: n.registry, History: n.status})
}

// adminBackend is the node as the admin API sees it (adminapi.Backend).
// Parts the node does not run answer nil, never a typed nil.
type adminBackend struct{ n *Node }

func (b adminBackend) Node() adminapi.NodeInfo {
	n := b.n
	info := adminapi.NodeInfo{Mode: n.opts.Mode, Version: n.opts.Version, Ready: n.ready.Load(), StartedAt: n.started,
		DataDir: n.opts.DataDir, AdminAuth: n.opts.AdminToken != "", DefaultPartitions: n.opts.DefaultPartitions,
		Listeners: adminapi.ListenersView{Kafka: n.KafkaAddr(), MQTT: n.MQTTAddrs(), MQTTWebSocket: n.MQTTWSAddr(), Mirror: n.MirrorAddr()}}
	if n.adminLn != nil {
		info.Listeners.Admin = n.AdminAddr()
	}
	if n.mqtt != nil {
		info.DevicesOnline = n.mqtt.Connected()
		info.Auth = n.opts.AuthMode
		if info.Auth == "" {
			info.Auth = AuthNone
		}
	}
	return info
}

func (b adminBackend) Log() *flog.Log { return b.n.log }

func (b adminBackend) TopicAdmin() kafka.TopicAdmin { return b.n.topicAdmin() }

func (b adminBackend) Groups() adminapi.Groups {
	if b.n.groups == nil {
		return nil
	}
	return b.n.groups
}

func (b adminBackend) Devices() *devices.Registry { return b.n.devices }

func (b adminBackend) UserChanges() adminapi.UserStore {
	if b.n.cluster == nil || b.n.security == nil {
		return nil
	}
	return b.n.securityStore()
}

func (b adminBackend) MirrorSender() (mirror.Status, bool) {
	if b.n.sender == nil {
		return mirror.Status{}, false
	}
	return b.n.sender.Status(), true
}

func (b adminBackend) MirrorReceiver() (mirror.ReceiverStatus, bool) {
	if b.n.receiver == nil {
		return mirror.ReceiverStatus{}, false
	}
	return b.n.receiver.Status(), true
}

func (b adminBackend) Cluster() adminapi.Cluster {
	if b.n.cluster == nil {
		return nil
	}
	return b.n.cluster
}
