package dev.strom.javaclient;

import static dev.strom.javaclient.support.Clients.get;
import static dev.strom.javaclient.support.Clients.pollExactly;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Await;
import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.Strom;
import dev.strom.javaclient.support.StromBroker;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

/** The Java Admin client against Strom: topics, cluster, configs, offsets, records, groups. */
@Strom(settings = {"group.initial.rebalance.delay.ms=0"})
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AdminTest {
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

    /** The cause of a failed client future, which must be of {@code type}. */
    private static <T extends Throwable> T failure(Class<T> type, Executable call) {
        ExecutionException error = assertThrows(ExecutionException.class, call);
        return assertInstanceOf(type, error.getCause(), error.toString());
    }

    @Test
    void describeClusterNamesThisBroker(StromBroker broker) throws Exception {
        DescribeClusterResult cluster = admin.describeCluster();
        String clusterId = get(cluster.clusterId());
        assertNotNull(clusterId);
        assertFalse(clusterId.isEmpty());
        Collection<Node> nodes = get(cluster.nodes());
        assertEquals(1, nodes.size(), nodes.toString());
        Node node = nodes.iterator().next();
        assertEquals("127.0.0.1", node.host());
        assertEquals(broker.port(), node.port());
        assertEquals(1, node.id());
        assertEquals(node, get(cluster.controller()));
    }

    @Test
    void topicLifecycle() throws Exception {
        String orders = Clients.unique("orders");
        String plain = Clients.unique("plain");
        CreateTopicsResult created = admin.createTopics(List.of(
                new NewTopic(orders, 3, (short) 1).configs(Map.of("retention.ms", "3600000", "cleanup.policy", "compact")),
                new NewTopic(plain, 1, (short) 1)));
        get(created.all());
        assertEquals(3, get(created.numPartitions(orders)));
        assertEquals(1, get(created.replicationFactor(orders)));
        Config createdConfig = get(created.config(orders));
        assertEquals("3600000", createdConfig.get("retention.ms").value());
        assertEquals("compact", createdConfig.get("cleanup.policy").value());
        Uuid ordersId = get(created.topicId(orders));
        assertNotEquals(Uuid.ZERO_UUID, ordersId);

        Map<String, TopicListing> listed = get(admin.listTopics().namesToListings());
        assertTrue(listed.keySet().containsAll(Set.of(orders, plain)), listed.keySet().toString());
        assertEquals(ordersId, listed.get(orders).topicId());
        assertFalse(listed.get(orders).isInternal());

        TopicDescription description = get(admin.describeTopics(List.of(orders)).allTopicNames()).get(orders);
        assertEquals(ordersId, description.topicId());
        assertFalse(description.isInternal());
        assertEquals(List.of(0, 1, 2), description.partitions().stream().map(TopicPartitionInfo::partition).toList());
        for (TopicPartitionInfo partition : description.partitions()) {
            assertEquals(1, partition.leader().id(), partition.toString());
            assertEquals(List.of(partition.leader()), partition.replicas());
            assertEquals(List.of(partition.leader()), partition.isr());
        }
        // Described by id as well.
        TopicDescription byId = get(admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(ordersId)))
                .allTopicIds()).get(ordersId);
        assertEquals(orders, byId.name());

        failure(TopicExistsException.class, () -> get(admin.createTopics(List.of(new NewTopic(orders, 1, (short) 1))).all()));
        failure(InvalidReplicationFactorException.class,
                () -> get(admin.createTopics(List.of(new NewTopic(Clients.unique("rf3"), 1, (short) 3))).all()));
        String validateOnly = Clients.unique("validate-only");
        get(admin.createTopics(List.of(new NewTopic(validateOnly, 2, (short) 1)), new CreateTopicsOptions().validateOnly(true)).all());
        assertFalse(get(admin.listTopics().names()).contains(validateOnly), "validateOnly created nothing");

        get(admin.createPartitions(Map.of(orders, NewPartitions.increaseTo(5))).all());
        assertEquals(5, get(admin.describeTopics(List.of(orders)).allTopicNames()).get(orders).partitions().size());
        failure(InvalidPartitionsException.class, () -> get(admin.createPartitions(Map.of(orders, NewPartitions.increaseTo(2))).all()));

        get(admin.deleteTopics(List.of(orders, plain)).all());
        Await.until("deleted topics gone from listTopics", () -> {
            Set<String> names = get(admin.listTopics().names());
            return !names.contains(orders) && !names.contains(plain);
        });
        failure(UnknownTopicOrPartitionException.class, () -> get(admin.describeTopics(List.of(orders)).allTopicNames()));
        failure(UnknownTopicOrPartitionException.class, () -> get(admin.deleteTopics(List.of(orders)).all()));
    }

    @Test
    void describeAndIncrementallyAlterTopicConfigs() throws Exception {
        String topic = Clients.createTopic(admin, "configs", 1);
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config defaults = get(admin.describeConfigs(List.of(resource)).all()).get(resource);
        ConfigEntry retention = defaults.get("retention.ms");
        assertEquals("604800000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, retention.source());
        assertEquals("delete", defaults.get("cleanup.policy").value());

        get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "1234567"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "65536"), AlterConfigOp.OpType.SET)))).all());
        Config altered = get(admin.describeConfigs(List.of(resource)).all()).get(resource);
        assertEquals("1234567", altered.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, altered.get("retention.ms").source());
        assertEquals(Set.of("delete", "compact"), Set.of(altered.get("cleanup.policy").value().split(",")));
        assertEquals("65536", altered.get("max.message.bytes").value());

        // SUBTRACT removes from a list, DELETE returns to the default.
        get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT),
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
        Config reverted = get(admin.describeConfigs(List.of(resource)).all()).get(resource);
        assertEquals("compact", reverted.get("cleanup.policy").value());
        assertEquals("604800000", reverted.get("retention.ms").value());
        assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, reverted.get("retention.ms").source());

        // Invalid values are refused, and validateOnly changes nothing.
        failure(InvalidConfigurationException.class, () -> get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all()));
        get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                        new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))),
                new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(true)).all());
        assertEquals("604800000", get(admin.describeConfigs(List.of(resource)).all()).get(resource).get("retention.ms").value());

        ConfigResource missing = new ConfigResource(ConfigResource.Type.TOPIC, Clients.unique("missing"));
        failure(UnknownTopicOrPartitionException.class, () -> get(admin.describeConfigs(List.of(missing)).all()));
    }

    @Test
    void listOffsetsAndDeleteRecords(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "offsets", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        long t0 = System.currentTimeMillis() - 600_000;
        // Timestamps out of order: the largest is at offset 6.
        long[] timestamps = {0, 1000, 2000, 3000, 4000, 5000, 9000, 6000, 7000, 8000};
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            for (int i = 0; i < timestamps.length; i++) {
                producer.send(new ProducerRecord<>(topic, 0, t0 + timestamps[i], null, "r" + i));
            }
            producer.flush();
        }
        assertEquals(0, listOffset(tp, OffsetSpec.earliest()).offset());
        assertEquals(10, listOffset(tp, OffsetSpec.latest()).offset());
        ListOffsetsResultInfo atTime = listOffset(tp, OffsetSpec.forTimestamp(t0 + 4500));
        assertEquals(5, atTime.offset());
        assertEquals(t0 + 5000, atTime.timestamp());
        ListOffsetsResultInfo max = listOffset(tp, OffsetSpec.maxTimestamp());
        assertEquals(6, max.offset());
        assertEquals(t0 + 9000, max.timestamp());
        assertEquals(-1, listOffset(tp, OffsetSpec.forTimestamp(t0 + 60_000)).offset(), "no record that late");

        DeletedRecords deleted = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp));
        assertEquals(4, deleted.lowWatermark());
        assertEquals(4, listOffset(tp, OffsetSpec.earliest()).offset());
        assertEquals(10, listOffset(tp, OffsetSpec.latest()).offset());
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of())) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            List<ConsumerRecord<String, String>> records = pollExactly(consumer, 6);
            assertEquals(4, records.get(0).offset());
            assertEquals("r4", records.get(0).value());
        }
        failure(OffsetOutOfRangeException.class,
                () -> get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(11))).lowWatermarks().get(tp)));
        // -1 means "up to the high watermark".
        assertEquals(10, get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp)).lowWatermark());
        assertEquals(10, listOffset(tp, OffsetSpec.earliest()).offset());
    }

    private static ListOffsetsResultInfo listOffset(TopicPartition tp, OffsetSpec spec) throws Exception {
        return get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp));
    }

    @Test
    void describeLogDirsReportsPartitionSizes(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "log-dirs", 2);
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            for (int i = 0; i < 20; i++) {
                producer.send(new ProducerRecord<>(topic, 0, null, "value-" + i));
            }
            producer.flush();
        }
        Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(1)).allDescriptions()).get(1);
        assertEquals(1, dirs.size(), dirs.toString());
        LogDirDescription dir = dirs.values().iterator().next();
        ReplicaInfo p0 = dir.replicaInfos().get(new TopicPartition(topic, 0));
        ReplicaInfo p1 = dir.replicaInfos().get(new TopicPartition(topic, 1));
        assertNotNull(p0, dir.replicaInfos().toString());
        assertNotNull(p1, dir.replicaInfos().toString());
        assertEquals(broker.partitionLogBytes(topic, 0), p0.size());
        assertTrue(p0.size() > 0);
        assertEquals(0, p1.size());
    }

    @Test
    void consumerGroupAdministration(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "group-admin", 2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            for (int i = 0; i < 5; i++) {
                producer.send(new ProducerRecord<>(topic, 0, null, "a" + i));
                producer.send(new ProducerRecord<>(topic, 1, null, "b" + i));
            }
            producer.flush();
        }
        String group = Clients.unique("admin-group");
        try (KafkaConsumer<String, String> member = Clients.consumer(broker, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic"))) {
            member.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> records = new java.util.ArrayList<>();
            Await.until("the member to read all 10 records", () -> {
                member.poll(Duration.ofMillis(100)).forEach(records::add);
                return records.size() >= 10;
            });
            member.commitSync();

            Map<String, ConsumerGroupListing> groups = get(admin.listConsumerGroups().all()).stream()
                    .collect(Collectors.toMap(ConsumerGroupListing::groupId, g -> g));
            ConsumerGroupListing listing = groups.get(group);
            assertNotNull(listing, groups.toString());
            assertEquals(GroupState.STABLE, listing.groupState().orElseThrow());
            assertEquals(GroupType.CLASSIC, listing.type().orElseThrow());

            // KIP-1043's listGroups, filtered to consumer groups.
            org.apache.kafka.clients.admin.GroupListing anyType = get(admin.listGroups(
                    org.apache.kafka.clients.admin.ListGroupsOptions.forConsumerGroups()).all()).stream()
                    .filter(g -> g.groupId().equals(group)).findFirst().orElseThrow();
            assertEquals(java.util.Optional.of(GroupType.CLASSIC), anyType.type());
            assertEquals("consumer", anyType.protocol());
            assertEquals(java.util.Optional.of(GroupState.STABLE), anyType.groupState());

            ConsumerGroupDescription described = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals(GroupState.STABLE, described.groupState());
            assertEquals(1, described.members().size());
            assertEquals(Set.of(p0, p1), described.members().iterator().next().assignment().topicPartitions());
            assertEquals(1, described.coordinator().id());
            assertFalse(described.isSimpleConsumerGroup());

            assertEquals(Map.of(p0, 5L, p1, 5L), offsetsOf(group));

            // Offsets of a group with members cannot be changed from outside, nor the group deleted.
            failure(UnknownMemberIdException.class, () -> get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1))).all()));
            failure(GroupNotEmptyException.class, () -> get(admin.deleteConsumerGroups(List.of(group)).all()));
        }
        Await.until("the group to be empty after its member left", () ->
                get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)).groupState() == GroupState.EMPTY);

        get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1, "rewound"), p1, new OffsetAndMetadata(3))).all());
        assertEquals(Map.of(p0, 1L, p1, 3L), offsetsOf(group));
        assertEquals("rewound", get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(p0).metadata());
        // A member joining now starts at the altered offsets.
        try (KafkaConsumer<String, String> member = Clients.consumer(broker, Map.of(ConsumerConfig.GROUP_ID_CONFIG, group))) {
            member.assign(List.of(p0, p1));
            List<ConsumerRecord<String, String>> records = pollExactly(member, 4 + 2);
            assertEquals(List.of("a1", "a2", "a3", "a4"), records.stream().filter(r -> r.partition() == 0).map(ConsumerRecord::value).toList());
            assertEquals(List.of("b3", "b4"), records.stream().filter(r -> r.partition() == 1).map(ConsumerRecord::value).toList());
        }

        get(admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all());
        assertEquals(Map.of(p0, 1L), offsetsOf(group));

        get(admin.deleteConsumerGroups(List.of(group)).all());
        assertFalse(get(admin.listConsumerGroups().all()).stream().anyMatch(g -> g.groupId().equals(group)), "deleted group still listed");
        assertEquals(Map.of(), offsetsOf(group));
        failure(GroupIdNotFoundException.class, () -> get(admin.deleteConsumerGroups(List.of(group)).all()));
    }

    @Test
    void removeMembersFromConsumerGroupRemovesAStaticMember(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "static-member", 1);
        String group = Clients.unique("static-group");
        String instance = Clients.unique("instance");
        try (KafkaConsumer<String, String> member = Clients.consumer(broker, Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic",
                ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance))) {
            member.subscribe(List.of(topic));
            Await.until("the static member's assignment", () -> {
                member.poll(Duration.ofMillis(50));
                return member.assignment().size() == 1;
            });
            ConsumerGroupDescription described = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
            assertEquals(1, described.members().size());
            assertEquals(java.util.Optional.of(instance), described.members().iterator().next().groupInstanceId());

            // KIP-345: a static member is removed by its instance id (LeaveGroup v3+); an
            // unknown instance id is refused.
            org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions unknown =
                    new org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions(
                            List.of(new org.apache.kafka.clients.admin.MemberToRemove("no-such-instance")));
            failure(UnknownMemberIdException.class, () -> get(admin.removeMembersFromConsumerGroup(group, unknown).all()));
            get(admin.removeMembersFromConsumerGroup(group, new org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions(
                    List.of(new org.apache.kafka.clients.admin.MemberToRemove(instance)))).all());
            ConsumerGroupDescription after = Await.value("the group without members", () -> {
                ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
                return d.members().isEmpty() ? java.util.Optional.of(d) : java.util.Optional.empty();
            });
            assertEquals(GroupState.EMPTY, after.groupState(), after.toString());
        }
    }

    private static Map<TopicPartition, Long> offsetsOf(String group) throws Exception {
        Map<TopicPartition, Long> offsets = new HashMap<>();
        get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).forEach((tp, om) -> offsets.put(tp, om.offset()));
        return offsets;
    }
}
