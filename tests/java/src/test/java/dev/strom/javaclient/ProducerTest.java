package dev.strom.javaclient;

import static dev.strom.javaclient.support.Clients.get;
import static dev.strom.javaclient.support.Clients.offsets;
import static dev.strom.javaclient.support.Clients.pollExactly;
import static dev.strom.javaclient.support.Clients.values;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.Strom;
import dev.strom.javaclient.support.StromBroker;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The Java producer against Strom: acks, idempotence, every codec, keys, headers, errors. */
@Strom
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ProducerTest {
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

    private static KafkaConsumer<String, String> readerFromStart(StromBroker broker, String topic, int partitions) {
        KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of());
        List<TopicPartition> assignment = IntStream.range(0, partitions).mapToObj(p -> new TopicPartition(topic, p)).toList();
        consumer.assign(assignment);
        consumer.seekToBeginning(assignment);
        return consumer;
    }

    @ParameterizedTest(name = "acks={0}")
    @ValueSource(strings = {"0", "1", "all"})
    void acksWriteEveryRecordOnceInOrder(String acks, StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "acks-" + acks, 1);
        int count = 50;
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of(
                ProducerConfig.ACKS_CONFIG, acks,
                // Idempotence needs acks=all; said explicitly so the client does not refuse.
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, acks.equals("all"),
                ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 1))) {
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)));
            }
            producer.flush();
        }
        for (int i = 0; i < count; i++) {
            RecordMetadata metadata = get(sent.get(i));
            assertEquals(0, metadata.partition());
            if (acks.equals("0")) {
                // No answer comes with acks=0, so the client cannot know the offset.
                assertFalse(metadata.hasOffset(), "acks=0 reported an offset: " + metadata);
            } else {
                assertEquals(i, metadata.offset(), "offset of record " + i);
            }
        }
        try (KafkaConsumer<String, String> consumer = readerFromStart(broker, topic, 1)) {
            List<ConsumerRecord<String, String>> records = pollExactly(consumer, count);
            assertEquals(IntStream.range(0, count).mapToObj(i -> "v" + i).toList(), values(records));
            assertEquals(longRange(0, count), offsets(records));
            assertEquals(Map.of(new TopicPartition(topic, 0), (long) count),
                    consumer.endOffsets(List.of(new TopicPartition(topic, 0))));
        }
    }

    @Test
    void idempotentProducerWritesEachSequenceOnce(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "idempotent", 2);
        int perPartition = 40;
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of(
                ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
                ProducerConfig.ACKS_CONFIG, "all",
                ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5,
                ProducerConfig.LINGER_MS_CONFIG, 0))) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < perPartition; i++) {
                for (int p = 0; p < 2; p++) {
                    sent.add(producer.send(new ProducerRecord<>(topic, p, null, "p" + p + "-" + i)));
                }
            }
            producer.flush();
            for (int i = 0; i < sent.size(); i++) {
                RecordMetadata metadata = get(sent.get(i));
                assertEquals(i % 2, metadata.partition());
                assertEquals(i / 2, metadata.offset());
            }
        }
        // The broker knows one producer per partition, whose last sequence is that of its last
        // record (sequences count records from 0 per partition), in epoch 0 and no transaction.
        Set<Long> producerIds = new HashSet<>();
        for (int p = 0; p < 2; p++) {
            TopicPartition partition = new TopicPartition(topic, p);
            List<ProducerState> states = get(admin.describeProducers(List.of(partition)).partitionResult(partition))
                    .activeProducers();
            assertEquals(1, states.size(), "producers of " + partition + ": " + states);
            ProducerState state = states.get(0);
            assertTrue(state.producerId() >= 0, state.toString());
            assertEquals(0, state.producerEpoch(), state.toString());
            assertEquals(perPartition - 1, state.lastSequence(), state.toString());
            assertTrue(state.currentTransactionStartOffset().isEmpty(), state.toString());
            producerIds.add(state.producerId());
        }
        assertEquals(1, producerIds.size(), "one producer id for both partitions: " + producerIds);
        try (KafkaConsumer<String, String> consumer = readerFromStart(broker, topic, 2)) {
            List<ConsumerRecord<String, String>> records = pollExactly(consumer, 2 * perPartition);
            for (int p = 0; p < 2; p++) {
                int partition = p;
                List<String> got = records.stream().filter(r -> r.partition() == partition).map(ConsumerRecord::value).toList();
                assertEquals(IntStream.range(0, perPartition).mapToObj(i -> "p" + partition + "-" + i).toList(), got);
            }
        }
        // A second idempotent producer is a different producer to the broker.
        try (KafkaProducer<String, String> second = Clients.producer(broker, Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true))) {
            assertEquals(perPartition, get(second.send(new ProducerRecord<>(topic, 0, null, "second"))).offset());
        }
        TopicPartition p0 = new TopicPartition(topic, 0);
        List<ProducerState> states = get(admin.describeProducers(List.of(p0)).partitionResult(p0)).activeProducers();
        assertEquals(2, states.size(), states.toString());
        assertTrue(states.stream().anyMatch(s -> !producerIds.contains(s.producerId()) && s.lastSequence() == 0), states.toString());
    }

    /** Codec ids in a record batch's attributes (the low three bits). */
    private static final Map<String, Integer> CODEC_IDS = Map.of("none", 0, "gzip", 1, "snappy", 2, "lz4", 3, "zstd", 4);

    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTripsAndIsStoredAsSent(String codec, StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "codec-" + codec, 1);
        int count = 300;
        // Compressible values: a codec that really compresses stores far fewer bytes than this.
        List<String> sentValues = IntStream.range(0, count)
                .mapToObj(i -> String.format("record-%05d ", i) + "strom ".repeat(30)).toList();
        long payloadBytes = sentValues.stream().mapToLong(v -> v.getBytes(StandardCharsets.UTF_8).length).sum();
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of(
                ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
                ProducerConfig.LINGER_MS_CONFIG, 20,
                ProducerConfig.BATCH_SIZE_CONFIG, 256 * 1024))) {
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "key-" + i, sentValues.get(i))));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                assertEquals(i, get(sent.get(i)).offset());
            }
        }
        try (KafkaConsumer<String, String> consumer = readerFromStart(broker, topic, 1)) {
            List<ConsumerRecord<String, String>> records = pollExactly(consumer, count);
            assertEquals(sentValues, values(records));
            assertEquals(IntStream.range(0, count).mapToObj(i -> "key-" + i).toList(),
                    records.stream().map(ConsumerRecord::key).toList());
            assertEquals(longRange(0, count), offsets(records));
        }
        // On disk: every batch carries the producer's codec (the topic's compression.type is
        // `producer`, so batches are stored as sent), and the codec really compressed.
        List<Integer> codecs = batchCodecs(broker.dataDir().resolve(topic + "-0"));
        assertFalse(codecs.isEmpty());
        assertEquals(Set.of(CODEC_IDS.get(codec)), new HashSet<>(codecs), "codec ids of the stored batches");
        long stored = broker.partitionLogBytes(topic, 0);
        if (codec.equals("none")) {
            assertTrue(stored > payloadBytes, stored + " bytes stored for " + payloadBytes + " of values");
        } else {
            assertTrue(stored < payloadBytes / 4, stored + " bytes stored for " + payloadBytes + " of values");
        }
    }

    @Test
    void topicCompressionTypeRecompressesIntoItsCodec(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "recompress", 1, Map.of("compression.type", "zstd"));
        List<String> sentValues = IntStream.range(0, 100).mapToObj(i -> "value-" + i + "-" + "x".repeat(100)).toList();
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of(
                ProducerConfig.COMPRESSION_TYPE_CONFIG, "gzip", ProducerConfig.LINGER_MS_CONFIG, 20))) {
            for (String value : sentValues) {
                producer.send(new ProducerRecord<>(topic, value));
            }
            producer.flush();
        }
        try (KafkaConsumer<String, String> consumer = readerFromStart(broker, topic, 1)) {
            assertEquals(sentValues, values(pollExactly(consumer, sentValues.size())));
        }
        assertEquals(Set.of(CODEC_IDS.get("zstd")), new HashSet<>(batchCodecs(broker.dataDir().resolve(topic + "-0"))));
    }

    /**
     * The codec of every batch in a partition directory's segments, in order: Kafka's v2 batch
     * header is base offset (8), length (4), leader epoch (4), magic (1), CRC (4), attributes (2).
     */
    private static List<Integer> batchCodecs(Path partitionDir) throws IOException {
        List<Path> segments;
        try (Stream<Path> files = Files.list(partitionDir)) {
            segments = files.filter(f -> f.getFileName().toString().endsWith(".log")).sorted().toList();
        }
        List<Integer> codecs = new ArrayList<>();
        for (Path segment : segments) {
            try (FileChannel channel = FileChannel.open(segment)) {
                long position = 0;
                ByteBuffer header = ByteBuffer.allocate(23);
                while (position + header.capacity() <= channel.size()) {
                    header.clear();
                    channel.read(header, position);
                    int length = header.getInt(8);
                    assertEquals(2, header.get(16), "magic of the batch at " + position + " in " + segment);
                    codecs.add(header.getShort(21) & 0x7);
                    position += 12 + length;
                }
            }
        }
        return codecs;
    }

    @Test
    void keysPickPartitionsAndHeadersKeysValuesRoundTrip(StromBroker broker) throws Exception {
        int partitions = 3;
        String topic = Clients.createTopic(admin, "keys-headers", partitions);
        long timestamp = System.currentTimeMillis() - 60_000;
        List<ProducerRecord<String, String>> sent = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            List<Header> headers = List.of(
                    new RecordHeader("index", Integer.toString(i).getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("dup", "first".getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("dup", "second".getBytes(StandardCharsets.UTF_8)),
                    new RecordHeader("nothing", null),
                    new RecordHeader("empty", new byte[0]));
            sent.add(new ProducerRecord<>(topic, null, timestamp + i, "key-" + i, "value-" + i, headers));
        }
        // Edge cases on partition 0: no key, an empty key, no value (a tombstone), an empty value.
        sent.add(new ProducerRecord<>(topic, 0, timestamp, null, "no-key"));
        sent.add(new ProducerRecord<>(topic, 0, timestamp, "", "empty-key"));
        sent.add(new ProducerRecord<>(topic, 0, timestamp, "tombstone", (String) null));
        sent.add(new ProducerRecord<>(topic, 0, timestamp, "empty-value", ""));

        Map<String, RecordMetadata> metadataByValue = new HashMap<>();
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            List<Future<RecordMetadata>> futures = sent.stream().map(producer::send).toList();
            producer.flush();
            for (int i = 0; i < sent.size(); i++) {
                metadataByValue.put(String.valueOf(sent.get(i).value()) + "/" + sent.get(i).key(), get(futures.get(i)));
            }
        }
        for (int i = 0; i < 30; i++) {
            byte[] key = ("key-" + i).getBytes(StandardCharsets.UTF_8);
            int expected = Utils.toPositive(Utils.murmur2(key)) % partitions; // the Java client's key hash
            assertEquals(expected, metadataByValue.get("value-" + i + "/key-" + i).partition(), "partition of key-" + i);
        }

        Map<String, ConsumerRecord<String, String>> byValue = new HashMap<>();
        try (KafkaConsumer<String, String> consumer = readerFromStart(broker, topic, partitions)) {
            for (ConsumerRecord<String, String> record : pollExactly(consumer, sent.size())) {
                byValue.put(record.value() + "/" + record.key(), record);
            }
        }
        for (int i = 0; i < 30; i++) {
            ConsumerRecord<String, String> record = byValue.get("value-" + i + "/key-" + i);
            RecordMetadata metadata = metadataByValue.get("value-" + i + "/key-" + i);
            assertEquals(metadata.partition(), record.partition());
            assertEquals(metadata.offset(), record.offset());
            assertEquals(timestamp + i, record.timestamp());
            assertEquals(TimestampType.CREATE_TIME, record.timestampType());
            Header[] headers = record.headers().toArray();
            assertEquals(5, headers.length, record.headers().toString());
            assertEquals("index", headers[0].key());
            assertArrayEquals(Integer.toString(i).getBytes(StandardCharsets.UTF_8), headers[0].value());
            // Duplicate keys are kept, in order.
            List<String> dups = new ArrayList<>();
            record.headers().headers("dup").forEach(h -> dups.add(new String(h.value(), StandardCharsets.UTF_8)));
            assertEquals(List.of("first", "second"), dups);
            assertEquals("nothing", headers[3].key());
            assertNull(headers[3].value(), "a null header value stays null");
            assertEquals("empty", headers[4].key());
            assertArrayEquals(new byte[0], headers[4].value(), "an empty header value stays empty");
        }
        ConsumerRecord<String, String> noKey = byValue.get("no-key/null");
        assertNull(noKey.key());
        assertEquals(0, noKey.headers().toArray().length);
        ConsumerRecord<String, String> emptyKey = byValue.get("empty-key/");
        assertEquals("", emptyKey.key(), "an empty key is not a null key");
        ConsumerRecord<String, String> tombstone = byValue.get("null/tombstone");
        assertNull(tombstone.value(), "a null value stays null");
        ConsumerRecord<String, String> emptyValue = byValue.get("/empty-value");
        assertEquals("", emptyValue.value(), "an empty value is not a null value");
        List<Long> partitionZeroOffsets = Stream.of(noKey, emptyKey, tombstone, emptyValue).map(ConsumerRecord::offset).toList();
        assertEquals(partitionZeroOffsets.stream().sorted().toList(), partitionZeroOffsets, "sent in order");
        assertNotEquals(partitionZeroOffsets.get(0), partitionZeroOffsets.get(1));
    }

    @Test
    void recordOverTopicMaxMessageBytesIsRefused(StromBroker broker) throws Exception {
        String topic = Clients.createTopic(admin, "too-large", 1, Map.of("max.message.bytes", "2048"));
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of(
                // Client-side limits above the topic's, so the broker is the one to refuse.
                ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 1 << 20,
                ProducerConfig.RETRIES_CONFIG, 0))) {
            Future<RecordMetadata> tooLarge = producer.send(new ProducerRecord<>(topic, "x".repeat(8192)));
            ExecutionException error = assertThrows(ExecutionException.class, () -> get(tooLarge));
            assertInstanceOf(RecordTooLargeException.class, error.getCause(), error.toString());
            // Nothing of the refused batch was written: the next record is the first.
            assertEquals(0, get(producer.send(new ProducerRecord<>(topic, "small"))).offset());
        }
    }

    /** [from, to) as a list of longs, to compare with record offsets. */
    private static List<Long> longRange(long from, long to) {
        List<Long> list = new ArrayList<>();
        for (long i = from; i < to; i++) {
            list.add(i);
        }
        return list;
    }
}
