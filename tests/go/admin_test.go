package strom

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// configOf is one config's value and source from a DescribeConfigs answer.
func configOf(t testing.TB, configs kadm.ResourceConfigs, name, key string) (string, kmsg.ConfigSource) {
	t.Helper()
	rc, err := configs.On(name, nil)
	if err != nil {
		t.Fatalf("describe configs of %s: %v", name, err)
	}
	if rc.Err != nil {
		t.Fatalf("describe configs of %s: %v (%s)", name, rc.Err, rc.ErrMessage)
	}
	for _, c := range rc.Configs {
		if c.Key == key {
			if c.Value == nil {
				return "<nil>", c.Source
			}
			return *c.Value, c.Source
		}
	}
	t.Fatalf("%s has no config %s", name, key)
	return "", 0
}

// Topic administration with kadm: create (with configs, validate-only, and the refusals),
// list, describe and alter configs (incremental and whole), add partitions, delete.
func TestAdminTopicsAndConfigs(t *testing.T) {
	b := startBroker(t, map[string]string{"auto.create.topics.enable": "false"})
	adm := newAdmin(t, b)
	ctx := testContext(t)
	t1, t2 := topicName(t, "one"), topicName(t, "two")

	created, err := adm.CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": str("3600000")}, t1, t2)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{t1, t2} {
		r := created[name]
		if r.Err != nil || r.NumPartitions != 3 || r.ReplicationFactor != 1 {
			t.Fatalf("create %s: %+v", name, r)
		}
		if c, ok := r.Configs["retention.ms"]; !ok || c.Value == nil || *c.Value != "3600000" {
			t.Fatalf("create %s: configs in the answer %+v, want retention.ms=3600000", name, r.Configs)
		}
	}

	// Refusals, each with Kafka's error.
	again, err := adm.CreateTopics(ctx, 1, 1, nil, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(again[t1].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("creating %s again: %v, want TOPIC_ALREADY_EXISTS", t1, again[t1].Err)
	}
	bad := topicName(t, "bad")
	replicated, err := adm.CreateTopics(ctx, 1, 3, nil, bad)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(replicated[bad].Err, kerr.InvalidReplicationFactor) {
		t.Fatalf("replication factor 3 on one broker: %v, want INVALID_REPLICATION_FACTOR", replicated[bad].Err)
	}
	badConfig, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{"retention.ms": str("soon")}, bad)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(badConfig[bad].Err, kerr.InvalidConfig) {
		t.Fatalf("retention.ms=soon: %v, want INVALID_CONFIG", badConfig[bad].Err)
	}
	validated, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, bad)
	if err != nil || validated[bad].Err != nil {
		t.Fatalf("validate-only create: %v %+v", err, validated[bad])
	}

	listed, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if listed.Has(bad) {
		t.Fatalf("refused or validate-only topic %s exists", bad)
	}
	for _, name := range []string{t1, t2} {
		d, ok := listed[name]
		if !ok || d.Err != nil || d.IsInternal || len(d.Partitions) != 3 || d.ID == (kadm.TopicID{}) {
			t.Fatalf("listed %s: %+v", name, d)
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader != 1 || fmt.Sprint(p.Replicas) != "[1]" || fmt.Sprint(p.ISR) != "[1]" {
				t.Fatalf("partition %+v, want led by node 1 with replicas [1]", p)
			}
		}
	}

	// Configs: the set one is a dynamic topic config, others are defaults.
	described, err := adm.DescribeTopicConfigs(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if v, src := configOf(t, described, t1, "retention.ms"); v != "3600000" || src != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms %s from %v, want 3600000 from DYNAMIC_TOPIC_CONFIG", v, src)
	}
	if v, src := configOf(t, described, t1, "cleanup.policy"); v != "delete" || src == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy %s from %v, want the default delete", v, src)
	}

	// Incremental: set one, delete another (back to its default).
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "cleanup.policy", Value: str("compact")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
	}, t1)
	if err != nil || altered[0].Err != nil {
		t.Fatalf("incremental alter: %v %+v", err, altered)
	}
	described, err = adm.DescribeTopicConfigs(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if v, src := configOf(t, described, t1, "cleanup.policy"); v != "compact" || src != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy %s from %v after the alter, want compact", v, src)
	}
	if v, src := configOf(t, described, t1, "retention.ms"); v != "604800000" || src == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms %s from %v after its delete, want the default 604800000", v, src)
	}
	refused, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: str("shred")}}, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(refused[0].Err, kerr.InvalidConfig) {
		t.Fatalf("cleanup.policy=shred: %v, want INVALID_CONFIG", refused[0].Err)
	}

	// The legacy whole-resource AlterConfigs replaces every dynamic config of the topic.
	replaced, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: str("2048")}}, t1)
	if err != nil || replaced[0].Err != nil {
		t.Fatalf("alter configs: %v %+v", err, replaced)
	}
	described, err = adm.DescribeTopicConfigs(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := configOf(t, described, t1, "max.message.bytes"); v != "2048" {
		t.Fatalf("max.message.bytes %s, want 2048", v)
	}
	if v, src := configOf(t, described, t1, "cleanup.policy"); v != "delete" || src == kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("cleanup.policy %s from %v after a whole replace, want the default again", v, src)
	}

	missing := topicName(t, "missing")
	unknown, err := adm.DescribeTopicConfigs(ctx, missing)
	if err == nil {
		rc, _ := unknown.On(missing, nil)
		err = rc.Err
	}
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("configs of a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}

	// Partitions: add two, refuse a decrease.
	added, err := adm.CreatePartitions(ctx, 2, t1)
	if err != nil || added[t1].Err != nil {
		t.Fatalf("create partitions: %v %+v", err, added[t1])
	}
	shrink, err := adm.UpdatePartitions(ctx, 2, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(shrink[t1].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrinking to 2 partitions: %v, want INVALID_PARTITIONS", shrink[t1].Err)
	}
	waitUntil(t, waitTimeout, t1+" with 5 partitions", func() (bool, error) {
		l, err := adm.ListTopics(ctx, t1)
		return err == nil && len(l[t1].Partitions) == 5, err
	})
	producer := newClient(t, b, kgo.DefaultProduceTopic(t1), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := &kgo.Record{Partition: 4, Value: []byte("into a new partition")}
	produceSync(t, producer, r)
	if r.Partition != 4 || r.Offset != 0 {
		t.Fatalf("record at %d/%d, want 4/0", r.Partition, r.Offset)
	}

	// Delete both; deleting again is refused.
	deleted, err := adm.DeleteTopics(ctx, t1, t2)
	if err != nil || deleted[t1].Err != nil || deleted[t2].Err != nil {
		t.Fatalf("delete: %v %+v", err, deleted)
	}
	waitUntil(t, waitTimeout, "the topics gone from metadata", func() (bool, error) {
		l, err := adm.ListTopics(ctx)
		return err == nil && !l.Has(t1) && !l.Has(t2), err
	})
	deletedAgain, err := adm.DeleteTopics(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(deletedAgain[t1].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("deleting %s again: %v, want UNKNOWN_TOPIC_OR_PARTITION", t1, deletedAgain[t1].Err)
	}
}

// The cluster as kadm sees it: one broker, its configs, its log directory, its API versions.
func TestAdminCluster(t *testing.T) {
	b := startBroker(t, map[string]string{"num.partitions": "4"})
	adm := newAdmin(t, b)
	ctx := testContext(t)

	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster == "" || md.Controller != 1 || len(md.Brokers) != 1 || md.Brokers[0].NodeID != 1 ||
		md.Brokers[0].Host != "127.0.0.1" || int(md.Brokers[0].Port) != b.port {
		t.Fatalf("metadata %+v, want one broker, node 1 at %s, controlling", md, b.Addr())
	}

	brokerConfigs, err := adm.DescribeBrokerConfigs(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := configOf(t, brokerConfigs, "1", "num.partitions"); v != "4" {
		t.Fatalf("broker num.partitions %s, want 4 as set", v)
	}

	// Auto-creation on a produce makes a topic of num.partitions partitions.
	topic := topicName(t, "auto")
	producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	produceSync(t, producer, kgo.StringRecord("hello"))
	listed, err := adm.ListTopics(ctx, topic)
	if err != nil || len(listed[topic].Partitions) != 4 {
		t.Fatalf("auto-created topic: %v %+v, want 4 partitions", err, listed[topic])
	}

	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	dirs.Each(func(d kadm.DescribedLogDir) {
		if d.Err != nil {
			t.Errorf("log dir %s: %v", d.Dir, d.Err)
		}
		for _, dp := range d.Topics[topic] {
			if dp.Size > 0 && dp.Dir == d.Dir {
				found = true
			}
		}
	})
	if !found {
		t.Fatalf("no partition of %s with data in the log dirs %+v", topic, dirs)
	}

	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := versions[1]
	if v.Err != nil {
		t.Fatal(v.Err)
	}
	for _, key := range []int16{int16(kmsg.Produce), int16(kmsg.Fetch), int16(kmsg.EndTxn), int16(kmsg.ConsumerGroupHeartbeat)} {
		if _, max, ok := v.KeyVersions(key); !ok || max < 1 {
			t.Fatalf("ApiVersions lacks key %d", key)
		}
	}
	if _, _, ok := v.KeyVersions(int16(kmsg.SASLHandshake)); ok {
		t.Fatalf("ApiVersions lists SaslHandshake, which Strom does not implement")
	}

	coordinators := adm.FindGroupCoordinators(ctx, "any-group")
	if c := coordinators["any-group"]; c.Err != nil || c.NodeID != 1 {
		t.Fatalf("group coordinator %+v, want node 1", c)
	}
}

// Offsets with kadm: start and end offsets, offsets by time and the max timestamp,
// DeleteRecords moving the start.
func TestAdminListAndDeleteOffsets(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	ctx := testContext(t)
	topic := topicName(t, "t")
	createTopic(t, adm, topic, 1, nil)
	producer := newClient(t, b, kgo.DefaultProduceTopic(topic))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var rs []*kgo.Record
	for i := 0; i < 10; i++ {
		// Timestamps one second apart, except offset 6, which is the latest.
		ts := base.Add(time.Duration(i) * time.Second)
		if i == 6 {
			ts = base.Add(time.Minute)
		}
		rs = append(rs, &kgo.Record{Value: []byte(fmt.Sprintf("v%d", i)), Timestamp: ts})
	}
	produceSync(t, producer, rs...)

	offsetAt := func(l kadm.ListedOffsets, err error) int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		o, ok := l.Lookup(topic, 0)
		if !ok || o.Err != nil {
			t.Fatalf("listed offsets %+v", l)
		}
		return o.Offset
	}
	if start := offsetAt(adm.ListStartOffsets(ctx, topic)); start != 0 {
		t.Fatalf("start offset %d, want 0", start)
	}
	if end := offsetAt(adm.ListEndOffsets(ctx, topic)); end != 10 {
		t.Fatalf("end offset %d, want 10", end)
	}
	if at := offsetAt(adm.ListOffsetsAfterMilli(ctx, base.Add(3500*time.Millisecond).UnixMilli(), topic)); at != 4 {
		t.Fatalf("first offset at or after base+3.5s: %d, want 4", at)
	}
	if at := offsetAt(adm.ListOffsetsAfterMilli(ctx, base.Add(2*time.Minute).UnixMilli(), topic)); at != 10 {
		t.Fatalf("offset after every timestamp: %d, want the end 10", at)
	}
	maxTs, err := adm.ListMaxTimestampOffsets(ctx, topic)
	if o, _ := maxTs.Lookup(topic, 0); err != nil || o.Offset != 6 || o.Timestamp != base.Add(time.Minute).UnixMilli() {
		t.Fatalf("max timestamp offset %+v (%v), want offset 6 at base+1m", o, err)
	}

	var to kadm.Offsets
	to.AddOffset(topic, 0, 4, -1)
	deleted, err := adm.DeleteRecords(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := deleted.Lookup(topic, 0); !ok || d.Err != nil || d.LowWatermark != 4 {
		t.Fatalf("delete records: %+v, want low watermark 4", d)
	}
	if start := offsetAt(adm.ListStartOffsets(ctx, topic)); start != 4 {
		t.Fatalf("start offset after delete records %d, want 4", start)
	}
	consumer := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	got := pollCount(t, consumer, 6)
	if got[0].Offset != 4 || string(got[0].Value) != "v4" {
		t.Fatalf("first record from the start after delete records: %d=%s, want 4=v4", got[0].Offset, got[0].Value)
	}
	var beyond kadm.Offsets
	beyond.AddOffset(topic, 0, 11, -1)
	deleted, err = adm.DeleteRecords(ctx, beyond)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := deleted.Lookup(topic, 0); !errors.Is(d.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete records beyond the end: %+v, want OFFSET_OUT_OF_RANGE", d)
	}
}

// Group administration with kadm: list and describe, fetch offsets and lag, reset offsets of
// an empty group (a consumer then starts there), delete a partition's offsets, delete the group
// (refused while it has a member).
func TestAdminGroups(t *testing.T) {
	b := startBroker(t, groupSettings)
	adm := newAdmin(t, b)
	ctx := testContext(t)
	topic := topicName(t, "t")
	group := topicName(t, "g")
	createTopic(t, adm, topic, 2, nil)
	producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceEach := func(n int) {
		var rs []*kgo.Record
		for i := 0; i < n; i++ {
			rs = append(rs, &kgo.Record{Partition: int32(i % 2), Value: []byte(fmt.Sprintf("v%d", i))})
		}
		produceSync(t, producer, rs...)
	}
	produceEach(10) // 5 per partition
	consumerOpts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.SessionTimeout(6 * time.Second),
		kgo.ClientID("admin-test-member"),
	}
	member := newClient(t, b, consumerOpts...)
	pollCount(t, member, 10)
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}

	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	d := described[group]
	if d.Err != nil || d.State != "Stable" || len(d.Members) != 1 || d.Members[0].ClientID != "admin-test-member" ||
		d.Coordinator.NodeID != 1 || len(d.AssignedPartitions()[topic]) != 2 {
		t.Fatalf("described %+v, want Stable with our one member on both partitions", d)
	}
	if fmt.Sprint(d.JoinTopics()) != fmt.Sprint([]string{topic}) {
		t.Fatalf("member subscriptions %v, want [%s]", d.JoinTopics(), topic)
	}
	deleteBusy, err := adm.DeleteGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(deleteBusy[group].Err, kerr.NonEmptyGroup) {
		t.Fatalf("deleting a group with a member: %v, want NON_EMPTY_GROUP", deleteBusy[group].Err)
	}

	// An admin commit (no member id, generation -1) is refused while the group has members.
	var early kadm.Offsets
	early.AddOffset(topic, 0, 0, -1)
	refused, err := adm.CommitOffsets(ctx, group, early)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := refused.Lookup(topic, 0); !errors.Is(o.Err, kerr.UnknownMemberID) {
		t.Fatalf("admin commit to a group with a member: %+v, want UNKNOWN_MEMBER_ID", o)
	}
	if o := fetchCommitted(t, adm, group, topic, 0); o != 5 {
		t.Fatalf("partition 0 committed %d after a refused commit, want 5", o)
	}

	produceEach(6) // 3 more per partition: lag 3 each
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		l, ok := lags[group].Lag.Lookup(topic, p)
		if !ok || l.Err != nil || l.Commit.At != 5 || l.End.Offset != 8 || l.Lag != 3 {
			t.Fatalf("lag of partition %d: %+v, want commit 5, end 8, lag 3", p, l)
		}
	}

	member.Close()
	waitUntil(t, waitTimeout, "the group empty", func() (bool, error) {
		listed, err := adm.ListGroups(ctx, "Empty")
		return err == nil && listed[group].State == "Empty", err
	})

	// Reset offsets (as kafka-consumer-groups --reset-offsets does: a commit without member).
	var reset kadm.Offsets
	reset.AddOffset(topic, 0, 2, -1)
	reset.AddOffset(topic, 1, 7, -1)
	if err := adm.CommitAllOffsets(ctx, group, reset); err != nil {
		t.Fatalf("reset offsets: %v", err)
	}
	if o := fetchCommitted(t, adm, group, topic, 0); o != 2 {
		t.Fatalf("partition 0 committed %d after the reset, want 2", o)
	}
	resumed := newClient(t, b, consumerOpts...)
	got := pollCount(t, resumed, 6+1)
	firsts := map[int32]int64{0: -1, 1: -1}
	for _, r := range got {
		if firsts[r.Partition] == -1 {
			firsts[r.Partition] = r.Offset
		}
	}
	if firsts[0] != 2 || firsts[1] != 7 || len(got) != 7 {
		t.Fatalf("after the reset read %d records starting at %v, want 6 from 2 on partition 0 and 1 from 7 on 1", len(got), firsts)
	}
	resumed.Close()
	waitUntil(t, waitTimeout, "the group empty again", func() (bool, error) {
		described, err := adm.DescribeGroups(ctx, group)
		return err == nil && described[group].State == "Empty", err
	})

	// Delete one partition's offsets, then the whole group.
	deletedOffsets, err := adm.DeleteOffsets(ctx, group, kadm.TopicsSet{topic: {1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := deletedOffsets.Lookup(topic, 1); !ok || e != nil {
		t.Fatalf("delete offsets of partition 1: %v (present %v)", e, ok)
	}
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := offsets.Lookup(topic, 1); ok {
		t.Fatalf("partition 1 still has a committed offset: %+v", offsets)
	}
	if o, ok := offsets.Lookup(topic, 0); !ok || o.At != 2 {
		t.Fatalf("partition 0 committed %+v, want 2 still", o)
	}
	deletedGroup, err := adm.DeleteGroups(ctx, group)
	if err != nil || deletedGroup[group].Err != nil {
		t.Fatalf("delete group: %v %+v", err, deletedGroup[group])
	}
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; ok {
		t.Fatalf("deleted group still listed: %+v", listed[group])
	}
	deletedAgain, err := adm.DeleteGroups(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(deletedAgain[group].Err, kerr.GroupIDNotFound) {
		t.Fatalf("deleting the group again: %v, want GROUP_ID_NOT_FOUND", deletedAgain[group].Err)
	}
}
