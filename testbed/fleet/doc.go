// Package fleet simulates what feeds an edge and what reads from it, over
// the wire only: MQTT 5 devices (paho.golang), each with its own client id
// and registry credentials, publishing sensor JSON replayed from real
// room-climate readings at a set rate and QoS, with bursts and alarms, and
// reconnecting with jittered backoff like field devices; a rate-controlled
// Kafka producer and a consumer (franz-go) that measures end-to-end
// latency from the timestamp every payload carries.
//
// Every payload carries its stream's key ("device" or "key"), a sequence
// number ("seq", from 0, one per publish attempt) and the time it was
// handed to the client ("sent_us", Unix microseconds). A Ledger records
// the outcome of each sequence number (acknowledged, failed, sent without
// acknowledgement at QoS 0), and Check compares it with the records a log
// holds: every acknowledged record present exactly once, and per key the
// sequence numbers strictly increasing (no duplicate, no reordering).
//
// The scenario runner (testbed/scenario) drives fleets against real ferry
// processes; see testbed/README.md.
package fleet
