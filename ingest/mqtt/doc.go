// Package mqtt is ferry's MQTT 3.1.1 and 5 front end: a full MQTT broker
// (mochi-mqtt is the protocol engine, extended through its hooks; ferry
// runs the connections, reading packets and writing deliveries, so that an
// idle one costs a goroutine on a small stack and no buffers) that also
// turns every publish into a record of a key-partitioned log topic, so Kafka
// clients and the mirror read what devices sent.
//
// It owns the ingest rules (MQTT topic filter with named levels → log topic,
// key template, partition count), the publish → record mapping (value = the
// payload unchanged, timestamp = receive time, headers = MQTT topic, QoS,
// retain, client id and the MQTT 5 properties), the acknowledgement rule (a
// QoS 1 PUBACK or QoS 2 PUBREC is sent only once the record is durable under
// its topic's flush policy, in the order the publishes arrived, without
// holding up the connection's next publish; the publishes of all
// connections to a partition are appended and fsynced together, group.go),
// recognition of retransmitted publishes so a lost PUBACK does not store a
// message twice, the session layer (QoS 1/2 messages for a client stored,
// restored after a restart and sent in per-session order within its
// Receive Maximum, also across a reconnect: sessions.go), connection limits, and the hand-off of authentication,
// ACLs and presence to an Authenticator (the device registry, wired in by
// the edge node).
//
// It appends to the log only through the log's API. It must never import
// another front end (ingest/kafka), the mirror or the device registry (it
// sees the registry only through the Authenticator and Presence
// interfaces), and never touch segment files.
package mqtt
