package mqtt

import "sync/atomic"

// Connected is the number of MQTT clients connected now (over every
// listener; the broker's own inline client is not one).
func (s *Server) Connected() int64 {
	if s.broker == nil {
		return 0
	}
	return atomic.LoadInt64(&s.broker.Info.ClientsConnected)
}

// Delivered is the number of PUBLISH packets sent to subscribers since the
// broker started (live and retained messages, resends included).
func (s *Server) Delivered() int64 {
	if s.broker == nil {
		return 0
	}
	return atomic.LoadInt64(&s.broker.Info.MessagesSent)
}
