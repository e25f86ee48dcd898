package dev.strom.javaclient;

import static dev.strom.javaclient.support.Clients.get;
import static dev.strom.javaclient.support.Clients.offsets;
import static dev.strom.javaclient.support.Clients.pollExactly;
import static dev.strom.javaclient.support.Clients.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Await;
import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.Strom;
import dev.strom.javaclient.support.StromBroker;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Java consumer against Strom: assignment and seeks, offsets by time, commits, groups. */
// Classic groups form at once instead of waiting 3 s for more members.
@Strom(settings = {"group.initial.rebalance.delay.ms=0"})
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class ConsumerTest {
    private static Admin admin;

    @BeforeAll
    static void setUp(StromBroker broker) {
        admin = Clients.admin(broker);
    }

    @AfterAll
    static void tearDown() {
        if (admin != null) {
            admin.close();
        }
    }

    /** Writes {@code count} records "p{partition}-{i}" to one partition, timestamps from {@code firstTimestamp}. */
    private static void produce(StromBroker broker, String topic, int partition, int count, long firstTimestamp)
            throws Exception {
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, partition, firstTimestamp + i * 1000L, "k" + i, "p" + partition + "-" + i));
            }
            producer.flush();
        }
    }

    @Test
    void assignSeekAndPositions(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "seek", 2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        long now = System.currentTimeMillis();
        produce(broker, topic, 0, 20, now);
        produce(broker, topic, 1, 10, now);
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of())) {
            consumer.assign(List.of(p0, p1));
            assertEquals(Set.of(p0, p1), consumer.assignment());
            assertEquals(Map.of(p0, 0L, p1, 0L), consumer.beginningOffsets(List.of(p0, p1)));
            assertEquals(Map.of(p0, 20L, p1, 10L), consumer.endOffsets(List.of(p0, p1)));

            consumer.seek(p0, 15);
            consumer.seekToEnd(List.of(p1));
            assertEquals(15, consumer.position(p0));
            assertEquals(10, consumer.position(p1));
            List<ConsumerRecord<String, String>> fromMiddle = pollExactly(consumer, 5);
            assertEquals(List.of("p0-15", "p0-16", "p0-17", "p0-18", "p0-19"), values(fromMiddle));
            assertEquals(List.of(15L, 16L, 17L, 18L, 19L), offsets(fromMiddle));
            assertEquals(20, consumer.position(p0));

            consumer.seekToBeginning(List.of(p1));
            consumer.seek(p0, 18);
            List<ConsumerRecord<String, String>> rest = pollExactly(consumer, 12);
            assertEquals(IntStream.range(0, 10).mapToObj(i -> "p1-" + i).toList(),
                    rest.stream().filter(r -> r.partition() == 1).map(ConsumerRecord::value).toList());
            assertEquals(List.of("p0-18", "p0-19"),
                    rest.stream().filter(r -> r.partition() == 0).map(ConsumerRecord::value).toList());
            assertEquals(Map.of(p0, 20L, p1, 10L), Map.of(p0, consumer.position(p0), p1, consumer.position(p1)));

            // A later record arrives to a consumer already at the end (a long poll).
            produce(broker, topic, 1, 1, now);
            List<ConsumerRecord<String, String>> later = pollExactly(consumer, 1);
            assertEquals(10, later.get(0).offset());
        }
    }

    @Test
    void outOfRangeSeekFailsOrResetsByPolicy(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "out-of-range", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        produce(broker, topic, 0, 5, System.currentTimeMillis());
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none"))) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, 100);
            OffsetOutOfRangeException error = Await.value("OFFSET_OUT_OF_RANGE from a fetch at 100", () -> {
                try {
                    consumer.poll(Duration.ofMillis(100));
                    return Optional.empty();
                } catch (OffsetOutOfRangeException e) {
                    return Optional.of(e);
                }
            });
            assertEquals(Map.of(tp, 100L), error.offsetOutOfRangePartitions());
        }
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "latest"))) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, 100);
            Await.until("the position reset to the end", () -> {
                consumer.poll(Duration.ofMillis(100));
                return consumer.position(tp) == 5;
            });
        }
    }

    @Test
    void offsetsForTimes(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "by-time", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        long t0 = System.currentTimeMillis() - 3_600_000;
        produce(broker, topic, 0, 10, t0); // record i at t0 + i s
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of())) {
            // The first record at or after the time, with the leader epoch it was written in.
            assertEquals(new OffsetAndTimestamp(4, t0 + 4000, Optional.of(0)),
                    consumer.offsetsForTimes(Map.of(tp, t0 + 4000)).get(tp));
            assertEquals(new OffsetAndTimestamp(4, t0 + 4000, Optional.of(0)),
                    consumer.offsetsForTimes(Map.of(tp, t0 + 3500)).get(tp));
            assertEquals(new OffsetAndTimestamp(0, t0, Optional.of(0)),
                    consumer.offsetsForTimes(Map.of(tp, t0 - 60_000)).get(tp));
            Map<TopicPartition, OffsetAndTimestamp> none = consumer.offsetsForTimes(Map.of(tp, t0 + 60_000));
            assertTrue(none.containsKey(tp), none.toString());
            assertNull(none.get(tp), "no record at or after the time");

            consumer.assign(List.of(tp));
            consumer.seek(tp, consumer.offsetsForTimes(Map.of(tp, t0 + 7000)).get(tp).offset());
            assertEquals(List.of("p0-7", "p0-8", "p0-9"), values(pollExactly(consumer, 3)));
        }
    }

    @Test
    void committedOffsetsWithMetadataAreWhereAGroupResumes(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "commits", 2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        produce(broker, topic, 0, 10, System.currentTimeMillis());
        produce(broker, topic, 1, 10, System.currentTimeMillis());
        String group = Clients.unique("commits");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            consumer.assign(List.of(p0, p1));
            Map<TopicPartition, OffsetAndMetadata> none = consumer.committed(Set.of(p0, p1));
            assertNull(none.get(p0), none.toString());
            assertNull(none.get(p1), none.toString());

            consumer.commitSync(Map.of(p0, new OffsetAndMetadata(7, "seven")));
            CompletableFuture<Map<TopicPartition, OffsetAndMetadata>> async = new CompletableFuture<>();
            consumer.commitAsync(Map.of(p1, new OffsetAndMetadata(3, "three")), (offsets, error) -> {
                if (error != null) {
                    async.completeExceptionally(error);
                } else {
                    async.complete(offsets);
                }
            });
            // The callback runs inside poll (or commitSync); poll until it has run.
            Await.until("the async commit's callback", () -> {
                consumer.poll(Duration.ofMillis(50));
                return async.isDone();
            });
            assertEquals(Map.of(p1, new OffsetAndMetadata(3, "three")), async.get());

            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(Set.of(p0, p1));
            assertEquals(7, committed.get(p0).offset());
            assertEquals("seven", committed.get(p0).metadata());
            assertEquals(3, committed.get(p1).offset());
            assertEquals("three", committed.get(p1).metadata());
        }
        // Another consumer of the group starts where the commits say.
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            consumer.assign(List.of(p0, p1));
            List<ConsumerRecord<String, String>> records = pollExactly(consumer, 3 + 7);
            assertEquals(List.of("p0-7", "p0-8", "p0-9"),
                    records.stream().filter(r -> r.partition() == 0).map(ConsumerRecord::value).toList());
            assertEquals(IntStream.range(3, 10).mapToObj(i -> "p1-" + i).toList(),
                    records.stream().filter(r -> r.partition() == 1).map(ConsumerRecord::value).toList());
        }
        Map<TopicPartition, OffsetAndMetadata> listed = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        assertEquals(Map.of(p0, new OffsetAndMetadata(7, "seven"), p1, new OffsetAndMetadata(3, "three")),
                withoutLeaderEpochs(listed));
    }

    private static Map<TopicPartition, OffsetAndMetadata> withoutLeaderEpochs(Map<TopicPartition, OffsetAndMetadata> offsets) {
        Map<TopicPartition, OffsetAndMetadata> plain = new HashMap<>();
        offsets.forEach((tp, om) -> plain.put(tp, new OffsetAndMetadata(om.offset(), om.metadata())));
        return plain;
    }

    /**
     * Two members of one group split four partitions, each reads exactly its partitions' records,
     * and when one leaves, the other takes all four over, starting at the leaver's commits.
     * Runs with Kafka's classic protocol (JoinGroup/SyncGroup, the client's assignor) and with
     * KIP-848's (ConsumerGroupHeartbeat, the broker's assignor).
     */
    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void subscribedMembersSplitPartitionsAndTakeOver(String protocol, StromBroker broker) throws Exception {
        int partitions = 4;
        String topic = Clients.createTopic(admin, "group-" + protocol, partitions);
        String group = Clients.unique("group-" + protocol);
        Map<String, Object> config = new HashMap<>(Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol,
                ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false));
        if (protocol.equals("classic")) {
            // Members learn of a rebalance on a heartbeat; the classic default is 3 s.
            config.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
            config.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
        }
        KafkaConsumer<String, String> first = Clients.consumer(broker, config);
        KafkaConsumer<String, String> second = Clients.consumer(broker, config);
        try {
            first.subscribe(List.of(topic));
            second.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> firstRecords = new ArrayList<>();
            List<ConsumerRecord<String, String>> secondRecords = new ArrayList<>();
            Await.until("both members to hold two partitions each", Duration.ofSeconds(45), () -> {
                first.poll(Duration.ofMillis(50)).forEach(firstRecords::add);
                second.poll(Duration.ofMillis(50)).forEach(secondRecords::add);
                return first.assignment().size() == 2 && second.assignment().size() == 2;
            });
            assertTrue(firstRecords.isEmpty() && secondRecords.isEmpty(), "nothing was produced yet");
            Set<TopicPartition> all = IntStream.range(0, partitions).mapToObj(p -> new TopicPartition(topic, p)).collect(Collectors.toSet());
            Set<TopicPartition> union = new HashSet<>(first.assignment());
            union.addAll(second.assignment());
            assertEquals(all, union, "the members' assignments cover the topic without overlap");

            ConsumerGroupDescription described = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals(protocol.equals("classic") ? GroupType.CLASSIC : GroupType.CONSUMER, described.type());
            assertEquals(GroupState.STABLE, described.groupState());
            assertEquals(2, described.members().size(), described.toString());
            Set<Set<TopicPartition>> describedAssignments = described.members().stream()
                    .map(m -> m.assignment().topicPartitions()).collect(Collectors.toSet());
            assertEquals(Set.of(first.assignment(), second.assignment()), describedAssignments);

            for (int p = 0; p < partitions; p++) {
                produce(broker, topic, p, 5, System.currentTimeMillis());
            }
            Await.until("all 20 records read", () -> {
                first.poll(Duration.ofMillis(50)).forEach(firstRecords::add);
                second.poll(Duration.ofMillis(50)).forEach(secondRecords::add);
                return firstRecords.size() + secondRecords.size() >= 20;
            });
            assertEquals(10, firstRecords.size(), "each member read its two partitions' records: " + firstRecords);
            assertEquals(10, secondRecords.size(), secondRecords.toString());
            assertEquals(first.assignment(), partitionsOf(firstRecords));
            assertEquals(second.assignment(), partitionsOf(secondRecords));
            first.commitSync();
            second.commitSync();

            // The second member leaves; the first takes its partitions, from their commits on.
            Set<TopicPartition> leaving = second.assignment();
            second.close();
            for (TopicPartition tp : leaving) {
                produce(broker, topic, tp.partition(), 3, System.currentTimeMillis());
            }
            List<ConsumerRecord<String, String>> takenOver = new ArrayList<>();
            Await.until("the remaining member to read the leaver's new records", Duration.ofSeconds(45), () -> {
                first.poll(Duration.ofMillis(100)).forEach(takenOver::add);
                return takenOver.size() >= 6;
            });
            assertEquals(all, first.assignment());
            assertEquals(6, takenOver.size(), takenOver.toString());
            for (ConsumerRecord<String, String> record : takenOver) {
                assertTrue(leaving.contains(new TopicPartition(record.topic(), record.partition())), record.toString());
                assertTrue(record.offset() >= 5, "read from the commit on, not from the start: " + record);
            }
            first.commitSync();
            Map<TopicPartition, OffsetAndMetadata> committed = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            Map<TopicPartition, Long> committedOffsets = new HashMap<>();
            committed.forEach((tp, om) -> committedOffsets.put(tp, om.offset()));
            Map<TopicPartition, Long> expected = new HashMap<>();
            for (TopicPartition tp : all) {
                expected.put(tp, leaving.contains(tp) ? 8L : 5L);
            }
            assertEquals(expected, committedOffsets);

            ConsumerGroupDescription after = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals(1, after.members().size(), after.toString());
            MemberDescription member = after.members().iterator().next();
            assertEquals(all, member.assignment().topicPartitions());
        } finally {
            first.close();
            second.close();
        }
    }

    private static Set<TopicPartition> partitionsOf(Collection<ConsumerRecord<String, String>> records) {
        return records.stream().map(r -> new TopicPartition(r.topic(), r.partition())).collect(Collectors.toSet());
    }

    /** KIP-848's broker-side regular expressions: the broker resolves the pattern to topics. */
    @Test
    void consumerProtocolRegexSubscriptionIsResolvedByTheBroker(StromBroker broker) throws Exception {
        String prefix = Clients.unique("regex");
        Clients.createTopics(admin, Map.of(prefix + "-a", 1, prefix + "-b", 2, Clients.unique("unmatched"), 1), Map.of());
        String group = Clients.unique("regex-group");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer"))) {
            consumer.subscribe(new SubscriptionPattern(prefix + "-.*"));
            Set<TopicPartition> matching = Set.of(
                    new TopicPartition(prefix + "-a", 0), new TopicPartition(prefix + "-b", 0), new TopicPartition(prefix + "-b", 1));
            Await.until("the partitions of the matching topics", () -> {
                consumer.poll(Duration.ofMillis(50));
                return consumer.assignment().equals(matching);
            });
            // A matching topic created later joins the subscription.
            Clients.createTopics(admin, Map.of(prefix + "-c", 1), Map.of());
            Set<TopicPartition> withNew = new HashSet<>(matching);
            withNew.add(new TopicPartition(prefix + "-c", 0));
            Await.until("the new matching topic's partition", () -> {
                consumer.poll(Duration.ofMillis(50));
                return consumer.assignment().equals(withNew);
            });
            produce(broker, prefix + "-c", 0, 2, System.currentTimeMillis());
            assertEquals(List.of("p0-0", "p0-1"), values(pollExactly(consumer, 2)));
        }
    }

    @Test
    void consumerProtocolGroupUsesTheBrokersAssignorByName(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "assignor", 3);
        String group = Clients.unique("assignor");
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer",
                ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, "range"))) {
            consumer.subscribe(List.of(topic));
            Await.until("the member to get all three partitions", () -> {
                consumer.poll(Duration.ofMillis(50));
                return consumer.assignment().size() == 3;
            });
            ConsumerGroupDescription described = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals("range", described.partitionAssignor());
            assertEquals(GroupType.CONSUMER, described.type());
            assertTrue(described.groupEpoch().orElseThrow() > 0, described.toString());
            assertEquals(Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2)),
                    described.members().iterator().next().assignment().topicPartitions());
        }
    }
}
