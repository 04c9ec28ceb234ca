package kafka

import (
	"errors"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	flog "ferry/log"
)

// TestSaramaDeleteRecordsAndBrokerConfigs: sarama's ClusterAdmin
// DeleteRecords (v0, v1 or v2 by its Version) moves the log start and is
// refused past the end; AlterConfig on the broker resource changes a
// dynamic broker config and DescribeConfig shows it writable, while a
// read-only one is refused (INVALID_REQUEST).
func TestSaramaDeleteRecordsAndBrokerConfigs(t *testing.T) {
	for _, v := range saramaVersions {
		t.Run(v.String(), func(t *testing.T) {
			b := startBroker(t, nil)
			b.log.CreateTopic("sdr", 1, nil)
			p, _ := b.log.Partition("sdr", 0)
			for range 6 {
				if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: []byte("v")}})); err != nil {
					t.Fatal(err)
				}
			}
			adm, err := sarama.NewClusterAdmin([]string{b.addr}, saramaConfig(v))
			if err != nil {
				t.Fatal(err)
			}
			defer adm.Close()
			if err := adm.DeleteRecords("sdr", map[int32]int64{0: 3}); err != nil {
				t.Fatalf("DeleteRecords: %v", err)
			}
			if p.StartOffset() != 3 {
				t.Fatalf("log start %d after DeleteRecords before 3", p.StartOffset())
			}
			if err := adm.DeleteRecords("sdr", map[int32]int64{0: 99}); err == nil || !strings.Contains(err.Error(), sarama.ErrOffsetOutOfRange.Error()) {
				t.Fatalf("DeleteRecords past the end: %v, want %v", err, sarama.ErrOffsetOutOfRange)
			}

			ms := "60000"
			if err := adm.AlterConfig(sarama.BrokerResource, "0", map[string]*string{"log.retention.ms": &ms}, false); err != nil {
				t.Fatalf("AlterConfig broker log.retention.ms: %v", err)
			}
			entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.BrokerResource, Name: "0", ConfigNames: []string{"log.retention.ms", "num.partitions"}})
			if err != nil || len(entries) != 2 {
				t.Fatalf("DescribeConfig broker: %+v %v", entries, err)
			}
			for _, e := range entries {
				if e.Name == "log.retention.ms" && (e.Value != ms || e.ReadOnly) || e.Name == "num.partitions" && !e.ReadOnly {
					t.Fatalf("broker config %+v", e)
				}
			}
			if c, _ := b.log.TopicConfig("sdr"); c.RetentionAge.Milliseconds() != 60000 {
				t.Fatalf("sdr's retention after the broker's change: %v", c.RetentionAge)
			}
			nine := "9"
			err = adm.AlterConfig(sarama.BrokerResource, "0", map[string]*string{"num.partitions": &nine}, false)
			if !errors.Is(err, sarama.ErrInvalidRequest) {
				t.Fatalf("AlterConfig broker num.partitions: %v, want %v", err, sarama.ErrInvalidRequest)
			}
		})
	}
}
