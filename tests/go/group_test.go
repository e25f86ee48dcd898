package strom

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupProtocols are the two ways franz-go runs a consumer group: the classic JoinGroup and
// SyncGroup protocol with a client-side balancer, and KIP-848's ConsumerGroupHeartbeat with the
// broker's assignor (kgo.ServerSideBalancer, which needs a range or sticky balancer first).
var groupProtocols = []struct {
	name      string
	groupType string // as ListGroups v5 names it
	opts      []kgo.Opt
}{
	{"classic", "classic", []kgo.Opt{
		kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.SessionTimeout(6 * time.Second),
	}},
	{"consumer", "consumer", []kgo.Opt{
		kgo.ServerSideBalancer(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
	}},
}

// groupMember is one member as either describe call shows it.
type groupMember struct {
	id         string
	partitions []int32 // of the test's one topic, sorted
}

// describeGroup describes a group with the call of its protocol: DescribeGroups for classic
// groups, ConsumerGroupDescribe for KIP-848 ones.
func describeGroup(ctx context.Context, adm *kadm.Client, protocol, group, topic string) (string, []groupMember, error) {
	var members []groupMember
	partitionsOf := func(set kadm.TopicsSet) []int32 {
		var ps []int32
		for p := range set[topic] {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		return ps
	}
	if protocol == "classic" {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return "", nil, err
		}
		d := described[group]
		if d.Err != nil {
			return "", nil, d.Err
		}
		if d.State != "Empty" && d.State != "Dead" && (d.ProtocolType != "consumer" || d.Protocol != "cooperative-sticky") {
			return "", nil, fmt.Errorf("protocol type %q protocol %q, want consumer and cooperative-sticky (franz-go's default)", d.ProtocolType, d.Protocol)
		}
		for _, m := range d.Members {
			assignment, ok := m.Assigned.AsConsumer()
			set := kadm.TopicsSet{}
			if ok {
				for _, tp := range assignment.Topics {
					for _, p := range tp.Partitions {
						set.Add(tp.Topic, p)
					}
				}
			}
			members = append(members, groupMember{m.MemberID, partitionsOf(set)})
		}
		return d.State, members, nil
	}
	described, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		return "", nil, err
	}
	d := described[group]
	if d.Err != nil {
		return "", nil, d.Err
	}
	for _, m := range d.Members {
		members = append(members, groupMember{m.MemberID, partitionsOf(m.Assignment)})
	}
	return d.State, members, nil
}

// A group member reads every record, commits, and leaves; the group's committed offsets are the
// log end offsets; a new member of the group reads only the records written after the commit.
func TestGroupConsumeCommitAndResume(t *testing.T) {
	for _, protocol := range groupProtocols {
		t.Run(protocol.name, func(t *testing.T) {
			b := startBroker(t, groupSettings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			group := topicName(t, "g")
			createTopic(t, adm, topic, 3, nil)
			producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceRound(t, producer, "first", 30)

			consumerOpts := append([]kgo.Opt{
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.DisableAutoCommit(),
			}, protocol.opts...)
			first := newClient(t, b, consumerOpts...)
			got := pollCount(t, first, 30)
			checkRound(t, got, "first", 30, 0)
			if err := first.CommitUncommittedOffsets(testContext(t)); err != nil {
				t.Fatalf("commit: %v", err)
			}
			committed, err := adm.FetchOffsets(testContext(t), group)
			if err != nil {
				t.Fatal(err)
			}
			for p := int32(0); p < 3; p++ {
				o, ok := committed.Lookup(topic, p)
				if !ok || o.Err != nil || o.At != 10 {
					t.Fatalf("committed offset of partition %d: %+v, want 10", p, o)
				}
			}

			// While the member is in the group: Stable, one member holding all three
			// partitions, listed with its type.
			waitUntil(t, waitTimeout, "the group stable with one member on 3 partitions", func() (bool, error) {
				state, members, err := describeGroup(testContext(t), adm, protocol.name, group, topic)
				if err != nil {
					return false, err
				}
				ok := state == "Stable" && len(members) == 1 && fmt.Sprint(members[0].partitions) == "[0 1 2]"
				return ok, fmt.Errorf("state %s members %+v", state, members)
			})
			listed, err := adm.ListGroups(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if g, ok := listed[group]; !ok || g.State != "Stable" || g.GroupType != protocol.groupType || g.ProtocolType != "consumer" {
				t.Fatalf("listed group %+v (present %v), want Stable, type %s, protocol type consumer", g, ok, protocol.groupType)
			}

			first.Close() // leaves the group
			waitUntil(t, waitTimeout, "the group empty after the member left", func() (bool, error) {
				state, members, err := describeGroup(testContext(t), adm, protocol.name, group, topic)
				return err == nil && state == "Empty" && len(members) == 0, fmt.Errorf("state %s members %+v err %v", state, members, err)
			})

			produceRound(t, producer, "second", 15)
			second := newClient(t, b, consumerOpts...)
			got = pollCount(t, second, 15)
			checkRound(t, got, "second", 15, 10)
		})
	}
}

// produceRound writes n records "<label>-<i>" round-robin over partitions 0-2.
func produceRound(t testing.TB, producer *kgo.Client, label string, n int) {
	t.Helper()
	var rs []*kgo.Record
	for i := 0; i < n; i++ {
		rs = append(rs, &kgo.Record{Partition: int32(i % 3), Value: []byte(fmt.Sprintf("%s-%d", label, i))})
	}
	produceSync(t, producer, rs...)
}

// checkRound checks that got is exactly the records of produceRound(label, n), each once, each
// partition's from offset firstOffset on without gaps.
func checkRound(t testing.TB, got []*kgo.Record, label string, n int, firstOffset int64) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records %v, want %d", len(got), values(got), n)
	}
	seen := map[string]bool{}
	nextOffset := map[int32]int64{0: firstOffset, 1: firstOffset, 2: firstOffset}
	for _, r := range got {
		v := string(r.Value)
		if !strings.HasPrefix(v, label+"-") || seen[v] {
			t.Fatalf("unexpected or repeated record %q at %d/%d; all: %v", v, r.Partition, r.Offset, values(got))
		}
		seen[v] = true
		if r.Offset != nextOffset[r.Partition] {
			t.Fatalf("record %q at %d/%d, want offset %d", v, r.Partition, r.Offset, nextOffset[r.Partition])
		}
		nextOffset[r.Partition]++
	}
}

// Two members split the partitions between them, and together read every record exactly once.
func TestGroupTwoMembersSplitPartitions(t *testing.T) {
	for _, protocol := range groupProtocols {
		t.Run(protocol.name, func(t *testing.T) {
			b := startBroker(t, groupSettings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			group := topicName(t, "g")
			createTopic(t, adm, topic, 3, nil)
			consumerOpts := append([]kgo.Opt{
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			}, protocol.opts...)
			members := []*kgo.Client{newClient(t, b, consumerOpts...), newClient(t, b, consumerOpts...)}

			// Both join (kgo joins in the background once it knows the topic); wait until the
			// group's assignment gives each member a share and covers all three partitions.
			waitUntil(t, waitTimeout, "two members sharing 3 partitions", func() (bool, error) {
				// A poll with nothing to read drives nothing in kgo, but the members' own
				// goroutines heartbeat; only the group's view is polled here.
				state, ms, err := describeGroup(testContext(t), adm, protocol.name, group, topic)
				if err != nil {
					return false, err
				}
				if state != "Stable" || len(ms) != 2 || len(ms[0].partitions) == 0 || len(ms[1].partitions) == 0 {
					return false, fmt.Errorf("state %s members %+v", state, ms)
				}
				all := append(append([]int32{}, ms[0].partitions...), ms[1].partitions...)
				sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
				return fmt.Sprint(all) == "[0 1 2]", fmt.Errorf("members %+v", ms)
			})

			producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceRound(t, producer, "r", 60)

			byMember := make([][]*kgo.Record, len(members))
			deadline := time.Now().Add(waitTimeout)
			for total := 0; total < 60; {
				if time.Now().After(deadline) {
					t.Fatalf("timed out: %d of 60 records read", total)
				}
				for i, m := range members {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					fetches := m.PollFetches(ctx)
					cancel()
					for _, e := range fetches.Errors() {
						if e.Err != context.DeadlineExceeded {
							t.Fatalf("member %d: fetch error %v", i, e.Err)
						}
					}
					rs := fetches.Records()
					byMember[i] = append(byMember[i], rs...)
					total += len(rs)
				}
			}
			owner := map[int32]int{}
			var all []*kgo.Record
			for i, rs := range byMember {
				if len(rs) == 0 {
					t.Fatalf("member %d read nothing", i)
				}
				for _, r := range rs {
					if o, ok := owner[r.Partition]; ok && o != i {
						t.Fatalf("partition %d read by members %d and %d", r.Partition, o, i)
					}
					owner[r.Partition] = i
				}
				all = append(all, rs...)
			}
			checkRound(t, all, "r", 60, 0)
		})
	}
}

// A consumer restarted after committing part of what it read resumes at the committed offset;
// committed offsets survive a broker SIGKILL and restart.
func TestGroupResumeFromCommittedOffsetsAcrossRestarts(t *testing.T) {
	for _, protocol := range groupProtocols {
		t.Run(protocol.name, func(t *testing.T) {
			b := startBroker(t, groupSettings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			group := topicName(t, "g")
			createTopic(t, adm, topic, 1, nil)
			producer := newClient(t, b, kgo.DefaultProduceTopic(topic))
			var rs []*kgo.Record
			for i := 0; i < 20; i++ {
				rs = append(rs, kgo.StringRecord(fmt.Sprintf("v%d", i)))
			}
			produceSync(t, producer, rs...)

			consumerOpts := append([]kgo.Opt{
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.DisableAutoCommit(),
			}, protocol.opts...)
			c1 := newClient(t, b, consumerOpts...)
			got := pollCount(t, c1, 20)
			if got[0].Offset != 0 || got[19].Offset != 19 {
				t.Fatalf("first consumer read offsets %d..%d, want 0..19", got[0].Offset, got[len(got)-1].Offset)
			}
			// Commit only the first 12 records (the next offset to read is 12), with metadata.
			var commitErr error
			c1.CommitOffsetsSync(testContext(t), map[string]map[int32]kgo.EpochOffset{
				topic: {0: {Epoch: -1, Offset: 12}},
			}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
				commitErr = commitResponseErr(resp, err)
			})
			if commitErr != nil {
				t.Fatalf("commit: %v", commitErr)
			}
			c1.Close()

			c2 := newClient(t, b, consumerOpts...)
			got = pollCount(t, c2, 8)
			if len(got) != 8 || got[0].Offset != 12 || string(got[0].Value) != "v12" || got[7].Offset != 19 {
				t.Fatalf("restarted consumer read %v from offset %d, want v12..v19 from 12", values(got), got[0].Offset)
			}
			if err := c2.CommitUncommittedOffsets(testContext(t)); err != nil {
				t.Fatalf("commit: %v", err)
			}
			c2.Close()

			// The broker dies without a clean shutdown; the commit (answered, so in the log) stays.
			b.Kill()
			b.Start()
			o := fetchCommitted(t, adm, group, topic, 0)
			if o != 20 {
				t.Fatalf("committed offset after broker SIGKILL: %d, want 20", o)
			}
			more := []*kgo.Record{kgo.StringRecord("v20"), kgo.StringRecord("v21")}
			produceSync(t, producer, more...)
			c3 := newClient(t, b, consumerOpts...)
			got = pollCount(t, c3, 2)
			if fmt.Sprint(values(got)) != "[v20 v21]" || got[0].Offset != 20 {
				t.Fatalf("consumer after broker restart read %v from %d, want [v20 v21] from 20", values(got), got[0].Offset)
			}
		})
	}
}

// fetchCommitted is the group's committed offset of one partition, waiting for the
// coordinator to answer (after a broker restart it may still be loading).
func fetchCommitted(t testing.TB, adm *kadm.Client, group, topic string, partition int32) int64 {
	t.Helper()
	var at int64 = -2
	waitUntil(t, waitTimeout, "the committed offset", func() (bool, error) {
		offsets, err := adm.FetchOffsets(testContext(t), group)
		if err != nil {
			return false, err
		}
		o, ok := offsets.Lookup(topic, partition)
		if !ok {
			return false, fmt.Errorf("no offset for %s/%d in %v", topic, partition, offsets)
		}
		at = o.At
		return o.Err == nil, o.Err
	})
	return at
}

// commitResponseErr is the first error of an OffsetCommit: the request's or a partition's.
func commitResponseErr(resp *kmsg.OffsetCommitResponse, err error) error {
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// A member that leaves hands its partitions to the one that stays, which reads on from the
// leaver's commits: every record is read exactly once across the two.
func TestGroupMemberLeavesOtherTakesOver(t *testing.T) {
	for _, protocol := range groupProtocols {
		t.Run(protocol.name, func(t *testing.T) {
			b := startBroker(t, groupSettings)
			adm := newAdmin(t, b)
			topic := topicName(t, "t")
			group := topicName(t, "g")
			createTopic(t, adm, topic, 3, nil)
			consumerOpts := append([]kgo.Opt{
				kgo.ConsumerGroup(group),
				kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.DisableAutoCommit(),
			}, protocol.opts...)
			leaver, stayer := newClient(t, b, consumerOpts...), newClient(t, b, consumerOpts...)
			waitUntil(t, waitTimeout, "two members with partitions", func() (bool, error) {
				state, ms, err := describeGroup(testContext(t), adm, protocol.name, group, topic)
				ok := err == nil && state == "Stable" && len(ms) == 2 && len(ms[0].partitions)+len(ms[1].partitions) == 3 &&
					len(ms[0].partitions) > 0 && len(ms[1].partitions) > 0
				return ok, fmt.Errorf("state %s members %+v err %v", state, ms, err)
			})
			producer := newClient(t, b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			produceRound(t, producer, "r", 30)

			// Each member reads what it was given and commits it.
			var all []*kgo.Record
			deadline := time.Now().Add(waitTimeout)
			for len(all) < 30 {
				if time.Now().After(deadline) {
					t.Fatalf("timed out: %d of 30 records read", len(all))
				}
				for _, m := range []*kgo.Client{leaver, stayer} {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					fetches := m.PollFetches(ctx)
					cancel()
					all = append(all, fetches.Records()...)
					if err := m.CommitUncommittedOffsets(testContext(t)); err != nil {
						t.Fatalf("commit: %v", err)
					}
				}
			}
			leaver.Close()
			waitUntil(t, waitTimeout, "the stayer holding all 3 partitions", func() (bool, error) {
				state, ms, err := describeGroup(testContext(t), adm, protocol.name, group, topic)
				return err == nil && state == "Stable" && len(ms) == 1 && fmt.Sprint(ms[0].partitions) == "[0 1 2]",
					fmt.Errorf("state %s members %+v err %v", state, ms, err)
			})
			produceRound(t, producer, "s", 30)
			later := pollCount(t, stayer, 30)
			checkRound(t, all, "r", 30, 0)
			checkRound(t, later, "s", 30, 10)
		})
	}
}

// A regex subscription: with KIP-848 the broker resolves the pattern (and picks up a matching
// topic created later); with the classic protocol the client does.
func TestGroupRegexSubscription(t *testing.T) {
	for _, protocol := range groupProtocols {
		t.Run(protocol.name, func(t *testing.T) {
			b := startBroker(t, groupSettings)
			adm := newAdmin(t, b)
			prefix := fmt.Sprintf("re%d", time.Now().UnixNano())
			a, c, other := prefix+"-a", prefix+"-c", "other-"+prefix
			for _, topic := range []string{a, c, other} {
				createTopic(t, adm, topic, 1, nil)
			}
			producer := newClient(t, b)
			produceSync(t, producer,
				&kgo.Record{Topic: a, Value: []byte("a0")},
				&kgo.Record{Topic: c, Value: []byte("c0")},
				&kgo.Record{Topic: other, Value: []byte("other0")},
			)
			consumer := newClient(t, b, append([]kgo.Opt{
				kgo.ConsumerGroup(topicName(t, "g")),
				kgo.ConsumeRegex(),
				kgo.ConsumeTopics("^" + regexp.QuoteMeta(prefix) + "-.*"),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			}, protocol.opts...)...)
			got := pollCount(t, consumer, 2)
			sorted := values(got)
			sort.Strings(sorted)
			if fmt.Sprint(sorted) != "[a0 c0]" {
				t.Fatalf("regex consumer read %v, want [a0 c0]", sorted)
			}
			if protocol.name != "consumer" {
				return // the classic client sees new topics only at its next metadata refresh
			}
			late := prefix + "-late"
			createTopic(t, adm, late, 1, nil)
			produceSync(t, producer, &kgo.Record{Topic: late, Value: []byte("late0")}, &kgo.Record{Topic: other, Value: []byte("other1")})
			got = pollCount(t, consumer, 1)
			if fmt.Sprint(values(got)) != "[late0]" {
				t.Fatalf("after a matching topic was created the consumer read %v, want [late0]", values(got))
			}
		})
	}
}

// A fetch from beyond the log end is answered OFFSET_OUT_OF_RANGE, and the consumer starts
// again where its reset policy says.
func TestConsumeOutOfRangeResets(t *testing.T) {
	b := startBroker(t, nil)
	adm := newAdmin(t, b)
	topic := topicName(t, "t")
	createTopic(t, adm, topic, 1, nil)
	producer := newClient(t, b, kgo.DefaultProduceTopic(topic))
	produceSync(t, producer, kgo.StringRecord("v0"), kgo.StringRecord("v1"), kgo.StringRecord("v2"))
	consumer := newClient(t, b,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(100)}}),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	got := pollCount(t, consumer, 3)
	if fmt.Sprint(values(got)) != "[v0 v1 v2]" || got[0].Offset != 0 {
		t.Fatalf("after an out-of-range start read %v from %d, want [v0 v1 v2] from 0", values(got), got[0].Offset)
	}
}
