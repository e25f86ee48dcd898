package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Await;
import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.Strom;
import dev.strom.javaclient.support.StromBroker;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka Streams 4.4 against Strom: a word count with exactly-once processing (transactions
 * v2), a repartition topic and a compacted changelog that Streams creates itself, stopped after
 * one batch and restarted on an empty state directory, so the second instance rebuilds its
 * counts from the changelog before it counts on, and counts on across a restart of the broker.
 */
@Strom(settings = {"group.initial.rebalance.delay.ms=0"})
@Timeout(value = 150, unit = TimeUnit.SECONDS)
class StreamsTest {
    /** Leaving the group on close: Streams stays a member until its session times out otherwise (45 s). */
    private static final CloseOptions LEAVE =
            CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                    .withTimeout(Duration.ofSeconds(30));
    private static final List<String> WORDS = List.of("ant", "bee", "cat", "dog", "eel", "fox", "gnu");
    private static Admin admin;
    private static StromBroker broker;

    @BeforeAll
    static void setUp(StromBroker started) {
        broker = started;
        admin = Clients.admin(broker);
    }

    @AfterAll
    static void tearDown() {
        admin.close();
    }

    @Test
    void exactlyOnceWordCountCarriesOnFromItsChangelogAfterARestart() throws Exception {
        String input = Clients.createTopic(admin, "lines", 3);
        String output = Clients.createTopic(admin, "counts", 3);
        String application = Clients.unique("wordcount");
        Map<String, Long> expected = new TreeMap<>();

        produceLines(input, 0, 200, expected);
        KafkaStreams first = start(application, input, output);
        try {
            awaitCounts(output, expected);
        } finally {
            first.close(LEAVE);
        }

        // The second instance starts with nothing on disk: its counts come from the changelog.
        produceLines(input, 200, 400, expected);
        KafkaStreams second = start(application, input, output);
        try {
            awaitCounts(output, expected);
            // The broker restarts under it; it carries on, exactly once.
            broker.restart();
            produceLines(input, 400, 600, expected);
            awaitCounts(output, expected);
        } finally {
            second.close(LEAVE);
        }

        // Streams made its internal topics through the admin API, the changelog compacted.
        String changelog = application + "-counts-changelog";
        var configs = Clients.get(admin.describeConfigs(List.of(
                new org.apache.kafka.common.config.ConfigResource(
                        org.apache.kafka.common.config.ConfigResource.Type.TOPIC, changelog))).all());
        assertEquals("compact", configs.values().iterator().next().get("cleanup.policy").value(), changelog);
    }

    /** Lines {@code from..to}, each naming three words by turns; tallies them in {@code counts}. */
    private static void produceLines(String topic, int from, int to, Map<String, Long> counts) throws Exception {
        try (KafkaProducer<String, String> producer = Clients.producer(broker, Map.of())) {
            for (int i = from; i < to; i++) {
                List<String> line = List.of(
                        WORDS.get(i % WORDS.size()), WORDS.get((i * 3 + 1) % WORDS.size()), WORDS.get((i * 5 + 2) % WORDS.size()));
                line.forEach(word -> counts.merge(word, 1L, Long::sum));
                producer.send(new ProducerRecord<>(topic, Integer.toString(i), String.join(" ", line)));
            }
            producer.flush();
        }
    }

    private static KafkaStreams start(String application, String input, String output) throws Exception {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .flatMapValues(line -> Arrays.asList(line.split(" ")))
                .groupBy((key, word) -> word, Grouped.with(Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        Properties config = new Properties();
        config.put(StreamsConfig.APPLICATION_ID_CONFIG, application);
        config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        config.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        config.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        config.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("strom-streams").toString());
        config.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        KafkaStreams streams = new KafkaStreams(builder.build(), config);
        List<Throwable> failures = new ArrayList<>();
        streams.setUncaughtExceptionHandler(error -> {
            failures.add(error);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        Await.until("the Streams application to run", Duration.ofSeconds(60), () -> {
            assertTrue(failures.isEmpty(), "Streams failed: " + failures);
            return streams.state() == KafkaStreams.State.RUNNING;
        });
        return streams;
    }

    /**
     * Reads the output (read_committed) until every word's latest count is the expected one,
     * checking on the way that no word's count ever goes down or past its total: a count
     * replayed twice, or lost, would.
     */
    private static void awaitCounts(String output, Map<String, Long> expected) {
        Map<String, Object> overrides = new HashMap<>();
        overrides.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        overrides.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class);
        Map<String, Long> latest = new TreeMap<>();
        try (KafkaConsumer<String, Long> consumer = new KafkaConsumer<>(consumerConfig(overrides))) {
            consumer.subscribe(List.of(output));
            Await.until("the word counts " + expected, Duration.ofSeconds(60), () -> {
                for (ConsumerRecord<String, Long> record : consumer.poll(Duration.ofMillis(200))) {
                    long before = latest.getOrDefault(record.key(), 0L);
                    assertTrue(record.value() >= before, record.key() + " went from " + before + " to " + record.value());
                    assertTrue(record.value() <= expected.getOrDefault(record.key(), 0L),
                            record.key() + " counted " + record.value() + " of " + expected.get(record.key()));
                    latest.put(record.key(), record.value());
                }
                return latest.equals(expected);
            });
        }
    }

    private static Map<String, Object> consumerConfig(Map<String, Object> overrides) {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
        config.put(ConsumerConfig.GROUP_ID_CONFIG, Clients.unique("reader"));
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, org.apache.kafka.common.serialization.StringDeserializer.class);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.putAll(overrides);
        return config;
    }
}
