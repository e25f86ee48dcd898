package dev.strom.javaclient;

import static dev.strom.javaclient.support.Clients.get;
import static dev.strom.javaclient.support.Clients.offsets;
import static dev.strom.javaclient.support.Clients.pollToEnd;
import static dev.strom.javaclient.support.Clients.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Await;
import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.StromBroker;
import java.lang.reflect.Field;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.ListTransactionsOptions;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.SupportedVersionRange;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Transactions with the Java client, run by {@link TransactionsTest} against a broker that
 * finalizes {@code transaction.version} 2 (Strom's default: the client then speaks transactions
 * v2, KIP-890 part 2) and by {@link TransactionsV1Test} against one at level 1 (the client stays
 * on v1). Each test checks which protocol the client negotiated and what follows from it.
 */
abstract class TransactionsContract {
    static final String TRANSACTION_VERSION = "transaction.version";
    /** The highest {@code transaction.version} Strom implements. */
    static final short TRANSACTION_VERSION_MAX = 2;

    static Admin admin;

    /** The level the broker of the concrete class finalizes. */
    abstract short transactionVersion();

    boolean clientShouldUseV2() {
        return transactionVersion() >= 2;
    }

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

    static KafkaProducer<String, String> transactionalProducer(StromBroker broker, String transactionalId) {
        return Clients.producer(broker, Map.of(
                ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60_000,
                ProducerConfig.LINGER_MS_CONFIG, 5));
    }

    static KafkaConsumer<String, String> reader(StromBroker broker, String isolation, Collection<TopicPartition> partitions) {
        KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation));
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        return consumer;
    }

    /** Everything a consumer with this isolation level reads from the start to the end offsets. */
    static List<ConsumerRecord<String, String>> readAll(StromBroker broker, String isolation, Collection<TopicPartition> partitions) {
        try (KafkaConsumer<String, String> consumer = reader(broker, isolation, partitions)) {
            return pollToEnd(consumer);
        }
    }

    /**
     * Whether the producer's transaction manager runs transactions v2. Kafka's client has no
     * public accessor for this; kafka-clients is pinned in the pom, so the field is known.
     */
    static boolean clientUsesTransactionsV2(KafkaProducer<?, ?> producer) throws ReflectiveOperationException {
        Field field = KafkaProducer.class.getDeclaredField("transactionManager");
        field.setAccessible(true);
        Object manager = field.get(producer);
        return (boolean) manager.getClass().getMethod("isTransactionV2Enabled").invoke(manager);
    }

    static TransactionDescription describe(String transactionalId) throws Exception {
        return get(admin.describeTransactions(List.of(transactionalId)).description(transactionalId));
    }

    @Test
    void clientNegotiatesTheTransactionVersionTheBrokerFinalizes(StromBroker broker) throws Exception {
        // What the broker offers, read the way the Java admin client reads it (ApiVersions).
        FeatureMetadata features = get(admin.describeFeatures().featureMetadata());
        SupportedVersionRange supported = features.supportedFeatures().get(TRANSACTION_VERSION);
        assertNotNull(supported, features.toString());
        assertEquals(0, supported.minVersion());
        assertEquals(TRANSACTION_VERSION_MAX, supported.maxVersion());
        FinalizedVersionRange finalized = features.finalizedFeatures().get(TRANSACTION_VERSION);
        assertNotNull(finalized, features.toString());
        assertEquals(transactionVersion(), finalized.maxVersionLevel());

        String topic = Clients.createTopic(admin, "txn-version", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String transactionalId = Clients.unique("txn-version");
        List<Integer> epochs = new ArrayList<>();
        try (KafkaProducer<String, String> producer = transactionalProducer(broker, transactionalId)) {
            producer.initTransactions();
            TransactionDescription initial = describe(transactionalId);
            assertEquals(TransactionState.EMPTY, initial.state());
            epochs.add(initial.producerEpoch());
            for (int txn = 0; txn < 3; txn++) {
                producer.beginTransaction();
                assertEquals(clientShouldUseV2(), clientUsesTransactionsV2(producer), "the client's transaction protocol");
                producer.send(new ProducerRecord<>(topic, "txn-" + txn));
                producer.commitTransaction();
                TransactionDescription after = describe(transactionalId);
                assertEquals(TransactionState.COMPLETE_COMMIT, after.state());
                assertEquals(initial.producerId(), after.producerId(), "one producer id throughout");
                epochs.add(after.producerEpoch());
            }
        }
        int first = epochs.get(0);
        if (clientShouldUseV2()) {
            // Transactions v2: every commit bumps the epoch, so a late write of a finished
            // transaction is refused.
            assertEquals(List.of(first, first + 1, first + 2, first + 3), epochs);
        } else {
            assertEquals(List.of(first, first, first, first), epochs);
        }
        List<ConsumerRecord<String, String>> committed = readAll(broker, "read_committed", List.of(tp));
        assertEquals(List.of("txn-0", "txn-1", "txn-2"), values(committed));
        // Each transaction is its record then its commit marker.
        assertEquals(List.of(0L, 2L, 4L), offsets(committed));
    }

    @Test
    void readCommittedSeesOnlyCommittedTransactions(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "commit-abort", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String transactionalId = Clients.unique("commit-abort");
        try (KafkaProducer<String, String> producer = transactionalProducer(broker, transactionalId)) {
            producer.initTransactions();
            producer.beginTransaction();
            for (String v : List.of("a0", "a1", "a2")) {
                producer.send(new ProducerRecord<>(topic, v));
            }
            producer.commitTransaction();

            producer.beginTransaction();
            for (String v : List.of("b0", "b1", "b2")) {
                producer.send(new ProducerRecord<>(topic, v));
            }
            producer.flush(); // in the log, then aborted
            producer.abortTransaction();
            assertEquals(TransactionState.COMPLETE_ABORT, describe(transactionalId).state());

            producer.beginTransaction();
            for (String v : List.of("c0", "c1")) {
                producer.send(new ProducerRecord<>(topic, v));
            }
            producer.commitTransaction();
        }
        // a0-a2 at 0-2, commit marker 3, b0-b2 at 4-6, abort marker 7, c0-c1 at 8-9, marker 10.
        List<ConsumerRecord<String, String>> committed = readAll(broker, "read_committed", List.of(tp));
        assertEquals(List.of("a0", "a1", "a2", "c0", "c1"), values(committed));
        assertEquals(List.of(0L, 1L, 2L, 8L, 9L), offsets(committed));
        List<ConsumerRecord<String, String>> uncommitted = readAll(broker, "read_uncommitted", List.of(tp));
        assertEquals(List.of("a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1"), values(uncommitted));
        assertEquals(List.of(0L, 1L, 2L, 4L, 5L, 6L, 8L, 9L), offsets(uncommitted));
        try (KafkaConsumer<String, String> consumer = reader(broker, "read_committed", List.of(tp))) {
            assertEquals(Map.of(tp, 11L), consumer.endOffsets(List.of(tp)));
        }
    }

    @Test
    void openTransactionHoldsTheLastStableOffsetAndAdminDescribesIt(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "open-txn", 2);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        String transactionalId = Clients.unique("open-txn");
        try (KafkaProducer<String, String> plain = Clients.producer(broker, Map.of());
                KafkaProducer<String, String> producer = transactionalProducer(broker, transactionalId);
                KafkaConsumer<String, String> committedReader = reader(broker, "read_committed", List.of(p0, p1));
                KafkaConsumer<String, String> uncommittedReader = reader(broker, "read_uncommitted", List.of(p0, p1))) {
            get(plain.send(new ProducerRecord<>(topic, 0, null, "before-0")));
            get(plain.send(new ProducerRecord<>(topic, 0, null, "before-1")));

            producer.initTransactions();
            long beganAt = System.currentTimeMillis();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 0, null, "open-0"));
            producer.send(new ProducerRecord<>(topic, 1, null, "open-1"));
            producer.flush();
            // Written after the transaction's records, but not readable past them.
            get(plain.send(new ProducerRecord<>(topic, 0, null, "after")));

            TransactionDescription open = describe(transactionalId);
            assertEquals(TransactionState.ONGOING, open.state());
            assertEquals(Set.of(p0, p1), open.topicPartitions());
            assertEquals(60_000, open.transactionTimeoutMs());
            long startedAt = open.transactionStartTimeMs().orElseThrow();
            assertTrue(startedAt >= beganAt - 1000 && startedAt <= System.currentTimeMillis() + 1000,
                    "transaction start " + startedAt + " vs begin " + beganAt);
            Collection<TransactionListing> ongoing = get(admin.listTransactions(
                    new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING))).all());
            assertTrue(ongoing.stream().anyMatch(l -> l.transactionalId().equals(transactionalId)
                    && l.producerId() == open.producerId() && l.state() == TransactionState.ONGOING), ongoing.toString());

            List<ProducerState> p0Producers = get(admin.describeProducers(List.of(p0)).partitionResult(p0)).activeProducers();
            ProducerState txnProducer = p0Producers.stream().filter(s -> s.producerId() == open.producerId()).findFirst()
                    .orElseThrow(() -> new AssertionError("no state for the transactional producer: " + p0Producers));
            assertEquals(Optional.of(2L), boxed(txnProducer.currentTransactionStartOffset()), txnProducer.toString());
            assertEquals(open.producerEpoch(), txnProducer.producerEpoch());

            // The last stable offset is the open transaction's first offset in each partition.
            assertEquals(Map.of(p0, 2L, p1, 0L), committedReader.endOffsets(List.of(p0, p1)));
            assertEquals(Map.of(p0, 4L, p1, 1L), uncommittedReader.endOffsets(List.of(p0, p1)));
            assertEquals(List.of("before-0", "before-1"), values(pollToEnd(committedReader)));
            assertEquals(List.of("before-0", "before-1", "open-0", "after", "open-1"),
                    sortedByPartitionThenOffset(pollToEnd(uncommittedReader)).stream().map(ConsumerRecord::value).toList());

            producer.commitTransaction();
            TransactionDescription done = describe(transactionalId);
            assertEquals(TransactionState.COMPLETE_COMMIT, done.state());
            assertTrue(done.topicPartitions().isEmpty(), done.toString());
            Collection<TransactionListing> stillOngoing = get(admin.listTransactions(
                    new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING))).all());
            assertFalse(stillOngoing.stream().anyMatch(l -> l.transactionalId().equals(transactionalId)), stillOngoing.toString());
            Collection<TransactionListing> all = get(admin.listTransactions().all());
            assertTrue(all.stream().anyMatch(l -> l.transactionalId().equals(transactionalId)
                    && l.state() == TransactionState.COMPLETE_COMMIT), all.toString());
            ProducerState closed = get(admin.describeProducers(List.of(p0)).partitionResult(p0)).activeProducers().stream()
                    .filter(s -> s.producerId() == open.producerId()).findFirst().orElseThrow();
            assertTrue(closed.currentTransactionStartOffset().isEmpty(), closed.toString());

            // Now the committed reader goes on, to the end including the marker.
            List<ConsumerRecord<String, String>> rest = pollToEnd(committedReader);
            assertEquals(List.of("open-0", "after", "open-1"),
                    sortedByPartitionThenOffset(rest).stream().map(ConsumerRecord::value).toList());
            assertEquals(Map.of(p0, 5L, p1, 2L), committedReader.endOffsets(List.of(p0, p1)));
        }
    }

    private static Optional<Long> boxed(java.util.OptionalLong value) {
        return value.isPresent() ? Optional.of(value.getAsLong()) : Optional.empty();
    }

    private static List<ConsumerRecord<String, String>> sortedByPartitionThenOffset(List<ConsumerRecord<String, String>> records) {
        List<ConsumerRecord<String, String>> sorted = new ArrayList<>(records);
        sorted.sort((a, b) -> a.partition() != b.partition() ? Integer.compare(a.partition(), b.partition()) : Long.compare(a.offset(), b.offset()));
        return sorted;
    }

    @Test
    void aNewProducerWithTheSameIdFencesTheOldOne(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "zombie", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String transactionalId = Clients.unique("zombie");
        try (KafkaProducer<String, String> zombie = transactionalProducer(broker, transactionalId)) {
            zombie.initTransactions();
            int zombieEpoch = describe(transactionalId).producerEpoch();
            zombie.beginTransaction();
            zombie.send(new ProducerRecord<>(topic, "from-zombie"));
            zombie.flush();
            try (KafkaProducer<String, String> successor = transactionalProducer(broker, transactionalId)) {
                // Initialising aborts the zombie's open transaction and bumps the epoch.
                successor.initTransactions();
                TransactionDescription fenced = describe(transactionalId);
                assertTrue(fenced.producerEpoch() > zombieEpoch, fenced + " vs epoch " + zombieEpoch);
                successor.beginTransaction();
                successor.send(new ProducerRecord<>(topic, "from-successor"));
                successor.commitTransaction();
            }
            assertThrows(ProducerFencedException.class, zombie::commitTransaction);
        }
        assertEquals(List.of("from-successor"), values(readAll(broker, "read_committed", List.of(tp))));
        assertEquals(List.of("from-zombie", "from-successor"), values(readAll(broker, "read_uncommitted", List.of(tp))));
    }

    @Test
    void adminFenceProducersAbortsTheOpenTransaction(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "fence", 1);
        TopicPartition tp = new TopicPartition(topic, 0);
        String transactionalId = Clients.unique("fence");
        try (KafkaProducer<String, String> producer = transactionalProducer(broker, transactionalId)) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, "fenced"));
            producer.flush();
            int epoch = describe(transactionalId).producerEpoch();
            get(admin.fenceProducers(List.of(transactionalId)).all());
            // As in Kafka: the open transaction is aborted under a bumped epoch, then the fencing
            // InitProducerId completes, which leaves the id Empty at a newer epoch still.
            TransactionDescription after = describe(transactionalId);
            assertTrue(after.producerEpoch() > epoch, after + " vs epoch " + epoch);
            assertEquals(TransactionState.EMPTY, after.state());
            assertTrue(after.topicPartitions().isEmpty(), after.toString());
            assertThrows(ProducerFencedException.class, producer::commitTransaction);
        }
        assertEquals(List.of(), values(readAll(broker, "read_committed", List.of(tp))));
        assertEquals(List.of("fenced"), values(readAll(broker, "read_uncommitted", List.of(tp))));
    }

    /**
     * Exactly-once consume-transform-produce: a read_committed member of a group reads the
     * input, and each batch's output records and the input offsets after it are committed in
     * one transaction (sendOffsetsToTransaction with the consumer's group metadata, which the
     * broker checks against the group). The first batch is aborted and processed again, so its
     * output must appear once, and the group's offsets only as committed.
     */
    @ParameterizedTest(name = "group.protocol={0}")
    @ValueSource(strings = {"classic", "consumer"})
    void consumeTransformProduceIsExactlyOnce(String protocol, StromBroker broker) throws Exception {
        int perPartition = 30;
        String input = Clients.createTopic(admin, "ctp-in-" + protocol, 2);
        String output = Clients.createTopic(admin, "ctp-out-" + protocol, 1);
        try (KafkaProducer<String, String> plain = Clients.producer(broker, Map.of())) {
            for (int i = 0; i < perPartition; i++) {
                for (int p = 0; p < 2; p++) {
                    plain.send(new ProducerRecord<>(input, p, null, "in-" + p + "-" + i));
                }
            }
            plain.flush();
        }
        String group = Clients.unique("ctp-" + protocol);
        Map<String, Object> consumerConfig = new HashMap<>(Map.of(
                ConsumerConfig.GROUP_ID_CONFIG, group,
                ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol,
                ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed",
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 7));
        if (protocol.equals("classic")) {
            consumerConfig.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
        }
        int aborted;
        Set<String> processed = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, consumerConfig);
                KafkaProducer<String, String> producer = transactionalProducer(broker, Clients.unique("ctp-" + protocol))) {
            producer.initTransactions();
            consumer.subscribe(List.of(input));
            ConsumerRecords<String, String> first = Await.value("the first input records", () -> {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                return records.isEmpty() ? Optional.empty() : Optional.of(records);
            });
            aborted = first.count();
            producer.beginTransaction();
            transform(producer, output, first);
            // Flushed, so the aborted output is in the log (an abort drops unsent records).
            producer.flush();
            producer.sendOffsetsToTransaction(nextOffsets(first), consumer.groupMetadata());
            producer.abortTransaction();
            assertEquals(clientShouldUseV2(), clientUsesTransactionsV2(producer), "the client's transaction protocol");
            // After an abort the application rewinds to the group's committed offsets: none yet.
            Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(consumer.assignment());
            assertTrue(committed.values().stream().allMatch(o -> o == null), "the aborted offsets were not committed: " + committed);
            consumer.seekToBeginning(consumer.assignment());

            Await.until("every input record processed", Duration.ofSeconds(60), () -> {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                if (!records.isEmpty()) {
                    producer.beginTransaction();
                    transform(producer, output, records);
                    producer.sendOffsetsToTransaction(nextOffsets(records), consumer.groupMetadata());
                    producer.commitTransaction();
                    records.forEach(r -> assertTrue(processed.add(r.value()), "processed twice: " + r));
                }
                return processed.size() == 2 * perPartition;
            });
        }
        Set<String> expected = IntStream.range(0, perPartition).boxed()
                .flatMap(i -> IntStream.range(0, 2).mapToObj(p -> "in-" + p + "-" + i)).collect(Collectors.toSet());
        assertEquals(expected, processed);

        TopicPartition out = new TopicPartition(output, 0);
        List<String> outputValues = values(readAll(broker, "read_committed", List.of(out)));
        assertEquals(2 * perPartition, outputValues.size(), "one output record per input record: " + outputValues);
        assertEquals(expected.stream().map(v -> v.toUpperCase()).collect(Collectors.toSet()), new HashSet<>(outputValues));
        assertTrue(aborted > 0);
        assertEquals(2 * perPartition + aborted, readAll(broker, "read_uncommitted", List.of(out)).size(),
                "read_uncommitted also sees the aborted batch's output");

        Map<TopicPartition, OffsetAndMetadata> groupOffsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        Map<TopicPartition, Long> plainOffsets = new HashMap<>();
        groupOffsets.forEach((tp, om) -> plainOffsets.put(tp, om.offset()));
        assertEquals(Map.of(new TopicPartition(input, 0), (long) perPartition, new TopicPartition(input, 1), (long) perPartition),
                plainOffsets);
    }

    private static void transform(KafkaProducer<String, String> producer, String output, ConsumerRecords<String, String> records) {
        for (ConsumerRecord<String, String> record : records) {
            producer.send(new ProducerRecord<>(output, record.partition() + ":" + record.offset(), record.value().toUpperCase()));
        }
    }

    private static Map<TopicPartition, OffsetAndMetadata> nextOffsets(ConsumerRecords<String, String> records) {
        Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
        for (TopicPartition tp : records.partitions()) {
            List<ConsumerRecord<String, String>> partitionRecords = records.records(tp);
            offsets.put(tp, new OffsetAndMetadata(partitionRecords.get(partitionRecords.size() - 1).offset() + 1));
        }
        return offsets;
    }
}
