// Package ingest groups the protocol front ends that append to the log:
// ingest/kafka (the Kafka wire protocol) and ingest/mqtt (MQTT 3.1.1 and 5).
//
// Front ends never import each other or the mirror; each turns its protocol's
// messages into RecordBatches and appends them through the log's API.
package ingest
