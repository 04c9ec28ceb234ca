// Package kafka is ferry's Kafka wire-protocol front end: a listener that
// speaks the protocol Kafka clients (franz-go, librdkafka/kcat, kafkajs,
// sarama) use, and serves it from the log.
//
// It owns connections, framing and the mapping of each request to the log:
// one file per API key (00_produce.go, 01_fetch.go, ...), each opening with
// its behaviour and version notes and registering the versions it handles,
// so ApiVersions advertises exactly what is implemented. Requests and
// responses are kmsg types; no codec is written by hand.
//
// It appends to and reads from the log only through the log's API. It must
// never import another front end (ingest/mqtt) or the mirror, and never
// touch segment files.
package kafka
