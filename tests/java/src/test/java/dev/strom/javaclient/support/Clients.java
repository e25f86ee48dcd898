package dev.strom.javaclient.support;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Java clients set up for a test broker, and the loops the tests share. */
public final class Clients {
    /** How long one client call that waits on the broker may take. */
    public static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);

    private Clients() {}

    /** A name unique to this run: {@code label-1a2b3c4d}. */
    public static String unique(String label) {
        return label + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    public static Admin admin(StromBroker broker) {
        Map<String, Object> config = new HashMap<>();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        return Admin.create(config);
    }

    /** A String producer; {@code overrides} are ProducerConfig entries. */
    public static KafkaProducer<String, String> producer(StromBroker broker, Map<String, Object> overrides) {
        Map<String, Object> config = new HashMap<>();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        config.putAll(overrides);
        return new KafkaProducer<>(config);
    }

    /** A String consumer reading from the earliest offset, never auto-committing. */
    public static KafkaConsumer<String, String> consumer(StromBroker broker, Map<String, Object> overrides) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CALL_TIMEOUT.toMillis());
        config.putAll(overrides);
        return new KafkaConsumer<>(config);
    }

    /** Creates topics (name: partitions) with these configs and waits for the answer. */
    public static void createTopics(Admin admin, Map<String, Integer> partitions, Map<String, String> configs)
            throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        partitions.forEach((name, count) -> topics.add(new NewTopic(name, count, (short) 1).configs(configs)));
        get(admin.createTopics(topics).all());
    }

    public static String createTopic(Admin admin, String label, int partitions) throws Exception {
        return createTopic(admin, label, partitions, Map.of());
    }

    /** Creates a topic with a unique name made from {@code label}; returns the name. */
    public static String createTopic(Admin admin, String label, int partitions, Map<String, String> configs)
            throws Exception {
        String name = unique(label);
        createTopics(admin, Map.of(name, partitions), configs);
        return name;
    }

    /** A client future's value, bounded by {@link #CALL_TIMEOUT}. */
    public static <T> T get(KafkaFuture<T> future) throws Exception {
        return future.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    }

    public static <T> T get(java.util.concurrent.Future<T> future) throws Exception {
        return future.get(CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** Polls until exactly {@code count} records arrived (fails on fewer by the deadline). */
    public static <K, V> List<ConsumerRecord<K, V>> pollExactly(KafkaConsumer<K, V> consumer, int count) {
        List<ConsumerRecord<K, V>> records = new ArrayList<>();
        long deadline = System.nanoTime() + Await.DEFAULT.toNanos();
        while (records.size() < count) {
            assertTrue(System.nanoTime() < deadline,
                    "timed out with " + records.size() + " of " + count + " records: " + records);
            consumer.poll(Duration.ofMillis(100)).forEach(records::add);
        }
        assertTrue(records.size() == count, "expected " + count + " records, got " + records.size() + ": " + records);
        return records;
    }

    /**
     * Polls until the consumer's position on every assigned partition reached the end offset
     * the broker reports for it (for read_committed consumers: the last stable offset), and
     * returns every record polled on the way. Unlike waiting for a count, this also shows that
     * nothing more was there to read.
     */
    public static <K, V> List<ConsumerRecord<K, V>> pollToEnd(KafkaConsumer<K, V> consumer) {
        Set<TopicPartition> assignment = consumer.assignment();
        Map<TopicPartition, Long> ends = consumer.endOffsets(assignment, CALL_TIMEOUT);
        List<ConsumerRecord<K, V>> records = new ArrayList<>();
        long deadline = System.nanoTime() + Await.DEFAULT.toNanos();
        while (!reached(consumer, ends)) {
            assertTrue(System.nanoTime() < deadline, "timed out before the end offsets " + ends + "; got " + records);
            consumer.poll(Duration.ofMillis(100)).forEach(records::add);
        }
        return records;
    }

    private static boolean reached(KafkaConsumer<?, ?> consumer, Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
            if (consumer.position(end.getKey(), CALL_TIMEOUT) < end.getValue()) {
                return false;
            }
        }
        return true;
    }

    public static List<String> values(Collection<? extends ConsumerRecord<?, String>> records) {
        return records.stream().map(ConsumerRecord::value).toList();
    }

    public static List<Long> offsets(Collection<? extends ConsumerRecord<?, ?>> records) {
        return records.stream().map(ConsumerRecord::offset).toList();
    }
}
