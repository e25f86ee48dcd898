package strom

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Records produced with acks=all by the (default) idempotent producer come back from every
// partition with the offsets the produce answers gave, and with their keys, values and headers.
func TestProduceAcksAllHeadersAndConsume(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	topic := topicName(t, "t")
	createTopic(t, adm, topic, 3, nil)

	producer := newClient(t, b,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	const perPartition = 10
	var sent []*kgo.Record
	for i := 0; i < 3*perPartition; i++ {
		r := &kgo.Record{
			Partition: int32(i % 3),
			Key:       []byte(fmt.Sprintf("key-%d", i)),
			Value:     []byte(fmt.Sprintf("value-%d", i)),
			Headers: []kgo.RecordHeader{
				{Key: "index", Value: []byte(fmt.Sprint(i))},
				{Key: "empty", Value: []byte{}},
				{Key: "index", Value: []byte("repeated key")},
			},
		}
		if i == 7 {
			r.Key = nil // a record without key
		}
		sent = append(sent, r)
	}
	produceSync(t, producer, sent...)
	// The produce answers: each partition's records got offsets 0..9 in the order sent, and the
	// idempotent producer's id and epoch 0.
	next := map[int32]int64{}
	for i, r := range sent {
		if r.Offset != next[r.Partition] {
			t.Fatalf("record %d: offset %d on partition %d, want %d", i, r.Offset, r.Partition, next[r.Partition])
		}
		next[r.Partition]++
		if r.ProducerID < 0 || r.ProducerEpoch != 0 {
			t.Fatalf("record %d: producer id %d epoch %d, want an idempotent producer's id at epoch 0", i, r.ProducerID, r.ProducerEpoch)
		}
	}

	consumer := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()},
	}))
	got := pollCount(t, consumer, len(sent))
	if len(got) != len(sent) {
		t.Fatalf("got %d records, want %d", len(got), len(sent))
	}
	byPlace := map[string]*kgo.Record{}
	for _, r := range got {
		byPlace[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = r
	}
	for i, want := range sent {
		r := byPlace[fmt.Sprintf("%d/%d", want.Partition, want.Offset)]
		if r == nil {
			t.Fatalf("record %d (partition %d offset %d) not consumed", i, want.Partition, want.Offset)
		}
		if string(r.Value) != string(want.Value) {
			t.Errorf("record %d: value %q, want %q", i, r.Value, want.Value)
		}
		if (want.Key == nil) != (r.Key == nil) || string(r.Key) != string(want.Key) {
			t.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, want.Key, want.Key == nil)
		}
		if len(r.Headers) != 3 {
			t.Fatalf("record %d: headers %v, want 3", i, r.Headers)
		}
		for h := range want.Headers {
			if r.Headers[h].Key != want.Headers[h].Key || string(r.Headers[h].Value) != string(want.Headers[h].Value) {
				t.Errorf("record %d header %d: %s=%q, want %s=%q", i, h, r.Headers[h].Key, r.Headers[h].Value, want.Headers[h].Key, want.Headers[h].Value)
			}
		}
		if r.ProducerID != want.ProducerID {
			t.Errorf("record %d: producer id %d, want %d", i, r.ProducerID, want.ProducerID)
		}
		if r.Timestamp.UnixMilli() != want.Timestamp.UnixMilli() {
			t.Errorf("record %d: timestamp %v, want the producer's %v", i, r.Timestamp, want.Timestamp)
		}
	}

	ends, err := adm.ListEndOffsets(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		end, ok := ends.Lookup(topic, p)
		if !ok || end.Err != nil || end.Offset != perPartition {
			t.Errorf("partition %d: end offset %+v, want %d", p, end, perPartition)
		}
	}
}

// The idempotent producer's state as the broker keeps it: one producer id per partition with
// the last sequence it wrote; a producer without idempotence writes no producer id.
func TestIdempotentProducerState(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	topic := topicName(t, "t")
	createTopic(t, adm, topic, 1, nil)

	idempotent := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	var last *kgo.Record
	for batch := 0; batch < 3; batch++ {
		var rs []*kgo.Record
		for i := 0; i < 5; i++ {
			rs = append(rs, kgo.StringRecord(fmt.Sprintf("batch-%d-%d", batch, i)))
		}
		produceSync(t, idempotent, rs...)
		last = rs[len(rs)-1]
	}
	if last.Offset != 14 {
		t.Fatalf("last offset %d, want 14", last.Offset)
	}
	described, err := adm.DescribeProducers(testContext(t), kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	partition := described[topic].Partitions[0]
	if partition.Err != nil {
		t.Fatalf("describe producers: %v", partition.Err)
	}
	if len(partition.ActiveProducers) != 1 {
		t.Fatalf("active producers %+v, want one", partition.ActiveProducers)
	}
	for _, p := range partition.ActiveProducers {
		if p.ProducerID != last.ProducerID || p.ProducerEpoch != 0 || p.LastSequence != 14 || p.CurrentTxnStartOffset != -1 {
			t.Fatalf("producer %+v, want id %d epoch 0 last sequence 14 and no transaction", p, last.ProducerID)
		}
	}

	plain := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.LeaderAck()))
	r := kgo.StringRecord("not idempotent")
	produceSync(t, plain, r)
	if r.Offset != 15 {
		t.Fatalf("offset %d, want 15", r.Offset)
	}
	consumer := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(15)}}))
	got := pollCount(t, consumer, 1)
	if got[0].ProducerID != -1 || string(got[0].Value) != "not idempotent" || got[0].Offset != 15 {
		t.Fatalf("got %+v, want the plain producer's record at 15 with producer id -1", got[0])
	}
}

// The codec numbers in a batch's attributes.
const (
	codecNone   = 0
	codecGzip   = 1
	codecSnappy = 2
	codecLz4    = 3
	codecZstd   = 4
)

// Every codec franz-go has round-trips, and the batches are stored in it (the codec read back
// from the fetched batch's attributes, so a silent fallback to uncompressed would show).
func TestCompressionCodecs(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		want  uint8
	}{
		{"none", kgo.NoCompression(), codecNone},
		{"gzip", kgo.GzipCompression(), codecGzip},
		{"snappy", kgo.SnappyCompression(), codecSnappy},
		{"lz4", kgo.Lz4Compression(), codecLz4},
		{"zstd", kgo.ZstdCompression(), codecZstd},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := topicName(t, "t")
			createTopic(t, adm, topic, 1, nil)
			producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(c.codec))
			sent := compressibleRecords(200)
			produceSync(t, producer, sent...)
			consumer := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
			got := pollCount(t, consumer, len(sent))
			checkSameValues(t, got, sent)
			for _, r := range got {
				if r.Attrs.CompressionType() != c.want {
					t.Fatalf("offset %d stored with codec %d, want %d", r.Offset, r.Attrs.CompressionType(), c.want)
				}
			}
		})
	}
}

// A topic's compression.type makes the broker recompress batches sent in another codec; the
// records, their offsets and the producer's id are unchanged.
func TestTopicCompressionTypeRecompresses(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	topic := topicName(t, "t")
	createTopic(t, adm, topic, 1, map[string]*string{"compression.type": str("zstd")})
	producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.GzipCompression()))
	sent := compressibleRecords(100)
	produceSync(t, producer, sent...)
	consumer := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	got := pollCount(t, consumer, len(sent))
	checkSameValues(t, got, sent)
	for i, r := range got {
		if r.Attrs.CompressionType() != codecZstd {
			t.Fatalf("offset %d stored with codec %d, want zstd (%d)", r.Offset, r.Attrs.CompressionType(), codecZstd)
		}
		if r.Offset != int64(i) || r.ProducerID != sent[i].ProducerID {
			t.Fatalf("record %d: offset %d producer %d, want %d and %d", i, r.Offset, r.ProducerID, i, sent[i].ProducerID)
		}
	}
}

func compressibleRecords(n int) []*kgo.Record {
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{
			Key:   []byte(fmt.Sprintf("k%d", i)),
			Value: []byte(fmt.Sprintf("%04d:%s", i, strings.Repeat("compressible ", 20))),
		}
	}
	return rs
}

func checkSameValues(t testing.TB, got, sent []*kgo.Record) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("got %d records, want %d", len(got), len(sent))
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Offset < got[j].Offset })
	for i := range sent {
		if string(got[i].Value) != string(sent[i].Value) || string(got[i].Key) != string(sent[i].Key) {
			t.Fatalf("record %d: %q=%q, want %q=%q", i, got[i].Key, got[i].Value, sent[i].Key, sent[i].Value)
		}
	}
}

// The broker's refusals reach the producer as Kafka's errors.
func TestProduceErrors(t *testing.T) {
	b := startBroker(t, map[string]string{"auto.create.topics.enable": "false"})
	adm := newAdmin(t, b)

	t.Run("record too large for max.message.bytes", func(t *testing.T) {
		topic := topicName(t, "t")
		createTopic(t, adm, topic, 1, map[string]*string{"max.message.bytes": str("1024")})
		producer := newClient(t, b, kgo.DefaultProduceTopic(topic))
		// Random bytes: franz-go compresses with snappy by default, and the limit applies to
		// the batch as sent.
		big := make([]byte, 4096)
		_, _ = rand.Read(big)
		err := producer.ProduceSync(testContext(t), &kgo.Record{Value: big}).FirstErr()
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("produce of 4 KiB into max.message.bytes=1024: %v, want MESSAGE_TOO_LARGE", err)
		}
		// The partition stays usable and nothing of the refused record was written.
		small := kgo.StringRecord("small")
		produceSync(t, producer, small)
		if small.Offset != 0 {
			t.Fatalf("offset %d after a refused record, want 0", small.Offset)
		}
	})

	t.Run("unknown topic without auto-creation", func(t *testing.T) {
		topic := topicName(t, "missing")
		producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.UnknownTopicRetries(1))
		err := producer.ProduceSync(testContext(t), kgo.StringRecord("x")).FirstErr()
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("produce to a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		topics, err := adm.ListTopics(testContext(t), topic)
		if err != nil {
			t.Fatal(err)
		}
		if topics.Has(topic) {
			t.Fatalf("topic %s was created", topic)
		}
	})

	t.Run("keyless record on a compacted topic", func(t *testing.T) {
		topic := topicName(t, "compacted")
		createTopic(t, adm, topic, 1, map[string]*string{"cleanup.policy": str("compact")})
		producer := newClient(t, b, kgo.DefaultProduceTopic(topic))
		err := producer.ProduceSync(testContext(t), &kgo.Record{Value: []byte("no key")}).FirstErr()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
		}
		keyed := &kgo.Record{Key: []byte("k"), Value: []byte("v")}
		produceSync(t, producer, keyed)
		if keyed.Offset != 0 {
			t.Fatalf("keyed record at offset %d, want 0", keyed.Offset)
		}
	})
}
