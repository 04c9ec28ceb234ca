// Package kafka is ferry's Kafka wire-protocol front end: a listener that
// speaks the protocol Kafka clients (franz-go, librdkafka/kcat, kafkajs,
// sarama) use, and serves it from the log.
//
// It owns connections, framing and the mapping of each request to the log:
// one file per API key (00_produce.go, 01_fetch.go, ...), each opening with
// its behaviour and version notes and registering the versions it handles,
// so ApiVersions advertises exactly what is implemented. Requests and
// responses are kmsg types; no codec is written by hand. Only the request
// header is read here (conn.go's headerReader), its tagged-field count
// refused when the bytes left cannot hold it; kmsg (v1.15.1 and later) stops
// at the first failed read and checks every array count against the bytes
// left (as if each element took a byte). Before kmsg sees a body, it is
// walked from a wire schema of ferry's own (prepass.go): a body that is
// malformed, holds a count its bytes cannot at each element's least size,
// or carries more than 256 tagged fields in header and body (kmsg keeps each
// unknown one in a map) is refused. So a frame's decoding costs work bounded
// by its size (hostile_test.go measures it for every key and version).
//
// In a center cluster it sees the metadata through its Cluster view and a
// replicated partition's leadership through Replication (replication.go,
// implemented by edge/replica): produce appends through the leader, acks=all
// waits for the high watermark, consumers read below it, and a follower's
// fetch is served only on a broker's connection handed over by the cluster
// listener (ServeReplica).
//
// It appends to and reads from the log only through the log's API. It must
// never import another front end (ingest/mqtt) or the mirror, and never
// touch segment files.
package kafka
