package kafka

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// regexLogger passes on what franz-go logs each time it evaluates its
// consume regexes against topics new to it: the topics it skipped as
// internal.
type regexLogger struct{ skippedInternal chan []string }

func (l regexLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (l regexLogger) Log(_ kgo.LogLevel, msg string, keyvals ...any) {
	if msg != "consumer regular expressions evaluated on new topics" {
		return
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		if keyvals[i] == "skipped_internal" {
			if topics, ok := keyvals[i+1].([]string); ok && len(topics) > 0 {
				select {
				case l.skippedInternal <- topics:
				default:
				}
			}
		}
	}
}

// TestRegexConsumerSkipsTheOffsetsTopic is what franz-go's TestConsumeRegex
// needs: a regex that matches every topic finds __consumer_offsets reported
// as internal, skips it, and consumes the ordinary topic.
func TestRegexConsumerSkipsTheOffsetsTopic(t *testing.T) {
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("rx-include", 1, nil); err != nil {
		t.Fatal(err)
	}
	produceN(t, b, "rx-include", 3, "v")
	logger := regexLogger{skippedInternal: make(chan []string, 16)}
	cl := b.client(t, kgo.ConsumeTopics(".*"), kgo.ConsumeRegex(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.WithLogger(logger))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got := 0
	for got < 3 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 3 records of rx-include", got)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic != "rx-include" {
				t.Fatalf("consumed a record of %s", r.Topic)
			}
			got++
		})
	}
	select {
	case skipped := <-logger.skippedInternal:
		if !slices.Equal(skipped, []string{offsetsTopic}) {
			t.Fatalf("skipped as internal: %v", skipped)
		}
	case <-ctx.Done():
		t.Fatal("the regex consumer never saw an internal topic to skip")
	}
	if topics := cl.GetConsumeTopics(); !slices.Equal(topics, []string{"rx-include"}) {
		t.Fatalf("consuming %v", topics)
	}
}

// TestOffsetsTopicIsInternalAndEmpty: __consumer_offsets is reported as an
// internal topic with no partitions; nothing creates it in the log, and
// every operation on it answers truthfully instead of crashing or pretending.
func TestOffsetsTopicIsInternalAndEmpty(t *testing.T) {
	b := startBroker(t, nil) // auto-creation on
	cl := b.client(t)
	ctx := ctxT(t)

	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(offsetsTopic)
	meta.Topics = append(meta.Topics, mt)
	meta.AllowAutoTopicCreation = true
	mr, err := meta.RequestWith(ctx, cl)
	if err != nil || len(mr.Topics) != 1 {
		t.Fatalf("metadata: %+v %v", mr, err)
	}
	if got := mr.Topics[0]; got.ErrorCode != 0 || !got.IsInternal || len(got.Partitions) != 0 {
		t.Fatalf("%s in metadata: error %d, internal %v, %d partitions", offsetsTopic, got.ErrorCode, got.IsInternal, len(got.Partitions))
	}
	if _, err := b.log.Topic(offsetsTopic); err == nil {
		t.Fatalf("%s was created in the log", offsetsTopic)
	}

	adm := kadm.NewClient(cl)
	listed, err := adm.ListTopics(ctx)
	if err != nil || listed.Has(offsetsTopic) {
		t.Fatalf("ListTopics (internal excluded) has %s: %v", offsetsTopic, err)
	}
	listed, err = adm.ListTopicsWithInternal(ctx)
	if err != nil || !listed.Has(offsetsTopic) || !listed[offsetsTopic].IsInternal {
		t.Fatalf("ListTopicsWithInternal: %+v %v", listed[offsetsTopic], err)
	}

	// Producing is refused, as Kafka refuses appends to internal topics.
	prod := kmsg.NewPtrProduceRequest()
	prod.Acks, prod.TimeoutMillis = 1, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = offsetsTopic
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = []byte{}
	pt.Partitions = append(pt.Partitions, pp)
	prod.Topics = append(prod.Topics, pt)
	if r, err := prod.RequestWith(ctx, cl); err != nil || r.Topics[0].Partitions[0].ErrorCode != kerr.InvalidTopicException.Code {
		t.Fatalf("raw produce: %+v %v", r, err)
	}

	// Reads: there is no partition to read. (Sent to the broker itself:
	// the client, knowing the topic has no partitions, would answer alone.)
	broker := cl.Broker(int(b.srv.opts.NodeID))
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = offsetsTopic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -2
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	if r, err := lo.RequestWith(ctx, broker); err != nil || r.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("list offsets: %+v %v", r, err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MaxBytes = 100, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = offsetsTopic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	if r, err := fetch.RequestWith(ctx, broker); err != nil || r.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("fetch: %+v %v", r, err)
	}

	// Admin: it exists and is not a log topic.
	created, err := adm.CreateTopic(ctx, 1, 1, nil, offsetsTopic)
	if !errorIs(created.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("create: %+v %v", created, err)
	}
	deleted, err := adm.DeleteTopics(ctx, offsetsTopic)
	if err != nil || !errorIs(deleted[offsetsTopic].Err, kerr.InvalidTopicException) {
		t.Fatalf("delete: %+v %v", deleted, err)
	}
	grown, err := adm.CreatePartitions(ctx, 2, offsetsTopic)
	if err != nil || !errorIs(grown[offsetsTopic].Err, kerr.InvalidTopicException) {
		t.Fatalf("create partitions: %+v %v", grown, err)
	}
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kmsg.StringPtr("1")}}, offsetsTopic)
	if err != nil || len(altered) != 1 || !errorIs(altered[0].Err, kerr.InvalidTopicException) {
		t.Fatalf("alter configs: %+v %v", altered, err)
	}
	described, err := adm.DescribeTopicConfigs(ctx, offsetsTopic)
	if err != nil || len(described) != 1 || described[0].Err != nil || len(described[0].Configs) != 0 {
		t.Fatalf("describe configs: %+v %v", described, err)
	}
	if _, err := b.log.Topic(offsetsTopic); err == nil {
		t.Fatalf("%s was created in the log", offsetsTopic)
	}
}

// Without a group coordinator there are no committed offsets, so no offsets
// topic is reported; the name stays reserved.
func TestNoOffsetsTopicWithoutCoordinator(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.Groups = nil })
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	listed, err := adm.ListTopicsWithInternal(ctx)
	if err != nil || listed.Has(offsetsTopic) {
		t.Fatalf("ListTopicsWithInternal: %v %v", listed.Names(), err)
	}
	created, _ := adm.CreateTopic(ctx, 1, 1, nil, offsetsTopic)
	if !errorIs(created.Err, kerr.InvalidTopicException) {
		t.Fatalf("create: %+v", created)
	}
}
