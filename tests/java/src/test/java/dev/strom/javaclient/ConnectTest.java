package dev.strom.javaclient;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.strom.javaclient.support.Await;
import dev.strom.javaclient.support.Clients;
import dev.strom.javaclient.support.Strom;
import dev.strom.javaclient.support.StromBroker;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.runtime.Connect;
import org.apache.kafka.connect.runtime.Herder;
import org.apache.kafka.connect.runtime.distributed.DistributedHerder;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorInfo;
import org.apache.kafka.connect.sink.SinkConnector;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.sink.SinkTask;
import org.apache.kafka.connect.source.SourceConnector;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;
import org.apache.kafka.connect.util.FutureCallback;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka Connect 4.4 against Strom: a distributed worker (its group with Connect's own protocol,
 * its compacted config, offset and status topics) runs a source connector writing numbered
 * records and a sink connector reading them back. A second worker, after the first stopped,
 * resumes the source from the offsets the first stored, so nothing is written twice.
 */
@Strom(settings = {"group.initial.rebalance.delay.ms=0"})
@Timeout(value = 150, unit = TimeUnit.SECONDS)
class ConnectTest {
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
    void aSourceAndASinkRunOnADistributedWorkerAndTheSourceResumesOnTheNext() throws Exception {
        String topic = Clients.createTopic(admin, "connect-data", 3);
        String group = Clients.unique("connect");
        Map<String, String> worker = workerConfig(group);
        CollectingSink.received.clear();

        Connect<DistributedHerder> first = new ConnectDistributed().startConnect(worker);
        try {
            put(first, "numbers", Map.of(
                    "connector.class", NumberSource.class.getName(),
                    "tasks.max", "1",
                    "topic", topic,
                    "count", "60"));
            put(first, "collector", Map.of(
                    "connector.class", CollectingSink.class.getName(),
                    "tasks.max", "2",
                    "topics", topic));
            awaitReceived(60);
            // The worker's group is a classic group of Connect's protocol type.
            Collection<GroupListing> groups = Clients.get(admin.listGroups().all());
            GroupListing listing = groups.stream()
                    .filter(g -> g.groupId().equals(group))
                    .findFirst()
                    .orElseThrow(() -> new AssertionError(group + " not in " + groups));
            assertEquals("connect", listing.protocol(), listing.toString());
        } finally {
            first.stop();
            first.awaitStop();
        }

        // A new worker of the same cluster picks up both connectors; the source goes on from
        // the offset the first worker stored, to 100.
        Connect<DistributedHerder> second = new ConnectDistributed().startConnect(worker);
        try {
            put(second, "numbers", Map.of(
                    "connector.class", NumberSource.class.getName(),
                    "tasks.max", "1",
                    "topic", topic,
                    "count", "100"));
            awaitReceived(100);
        } finally {
            second.stop();
            second.awaitStop();
        }
        List<String> written = readAll(topic);
        assertEquals(100, written.size(), "each number written once: " + written);
        assertEquals(expected(100), new TreeSet<>(written));
    }

    private static Map<String, String> workerConfig(String group) {
        Map<String, String> config = new HashMap<>();
        config.put("bootstrap.servers", broker.bootstrap());
        config.put("group.id", group);
        config.put("listeners", "http://127.0.0.1:0");
        config.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        config.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        config.put("config.storage.topic", group + "-configs");
        config.put("offset.storage.topic", group + "-offsets");
        config.put("status.storage.topic", group + "-status");
        config.put("config.storage.replication.factor", "1");
        config.put("offset.storage.replication.factor", "1");
        config.put("status.storage.replication.factor", "1");
        config.put("offset.flush.interval.ms", "200");
        // Tasks of a worker that left are reassigned at once, not after 5 minutes.
        config.put("scheduled.rebalance.max.delay.ms", "0");
        config.put("plugin.discovery", "only_scan");
        return config;
    }

    private static void put(Connect<DistributedHerder> connect, String name, Map<String, String> config)
            throws Exception {
        Map<String, String> named = new HashMap<>(config);
        named.put("name", name);
        // Asked again while the worker is still joining its group (it refuses until it has).
        Await.until("connector " + name + " accepted", Duration.ofSeconds(60), () -> {
            FutureCallback<Herder.Created<ConnectorInfo>> done = new FutureCallback<>();
            connect.herder().putConnectorConfig(name, named, true, done);
            done.get(10, TimeUnit.SECONDS);
            return true;
        });
    }

    private static void awaitReceived(int count) {
        Set<String> wanted = expected(count);
        Await.until("the sink to receive " + count + " numbers", Duration.ofSeconds(60),
                () -> CollectingSink.received.keySet().containsAll(wanted));
    }

    private static Set<String> expected(int count) {
        return IntStream.range(0, count).mapToObj(ConnectTest::number).collect(Collectors.toCollection(TreeSet::new));
    }

    private static String number(int i) {
        return String.format("number-%03d", i);
    }

    private static List<String> readAll(String topic) {
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = Clients.consumer(broker, Map.of())) {
            List<TopicPartition> partitions = IntStream.range(0, 3).mapToObj(p -> new TopicPartition(topic, p)).toList();
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Clients.pollToEnd(consumer).forEach(record -> values.add(record.value()));
        }
        return values;
    }

    /** Writes number-000 up to its {@code count}, resuming after the last offset stored. */
    public static class NumberSource extends SourceConnector {
        private Map<String, String> config;

        @Override
        public void start(Map<String, String> props) {
            config = props;
        }

        @Override
        public Class<? extends Task> taskClass() {
            return NumberTask.class;
        }

        @Override
        public List<Map<String, String>> taskConfigs(int maxTasks) {
            return List.of(config);
        }

        @Override
        public void stop() {}

        @Override
        public ConfigDef config() {
            return new ConfigDef()
                    .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "where to write")
                    .define("count", ConfigDef.Type.INT, ConfigDef.Importance.HIGH, "how many numbers");
        }

        @Override
        public String version() {
            return "1";
        }
    }

    public static class NumberTask extends SourceTask {
        private static final Map<String, String> PARTITION = Map.of("source", "numbers");
        private final CountDownLatch stopped = new CountDownLatch(1);
        private String topic;
        private int next;
        private int count;

        @Override
        public void start(Map<String, String> props) {
            topic = props.get("topic");
            count = Integer.parseInt(props.get("count"));
            Map<String, Object> stored = context.offsetStorageReader().offset(PARTITION);
            next = stored == null ? 0 : ((Number) stored.get("next")).intValue();
        }

        @Override
        public List<SourceRecord> poll() throws InterruptedException {
            if (next >= count) {
                // Nothing more to write: idle until stopped (or asked again shortly).
                stopped.await(100, TimeUnit.MILLISECONDS);
                return null;
            }
            List<SourceRecord> records = new ArrayList<>();
            for (; next < count && records.size() < 10; next++) {
                records.add(new SourceRecord(PARTITION, Map.of("next", next + 1), topic, null,
                        Schema.STRING_SCHEMA, number(next)));
            }
            return records;
        }

        @Override
        public void stop() {
            stopped.countDown();
        }

        @Override
        public String version() {
            return "1";
        }
    }

    /** Keeps every value its tasks receive. */
    public static class CollectingSink extends SinkConnector {
        static final Map<String, Boolean> received = new ConcurrentHashMap<>();
        private Map<String, String> config;

        @Override
        public void start(Map<String, String> props) {
            config = props;
        }

        @Override
        public Class<? extends Task> taskClass() {
            return CollectingTask.class;
        }

        @Override
        public List<Map<String, String>> taskConfigs(int maxTasks) {
            return IntStream.range(0, maxTasks).mapToObj(i -> config).toList();
        }

        @Override
        public void stop() {}

        @Override
        public ConfigDef config() {
            return new ConfigDef();
        }

        @Override
        public String version() {
            return "1";
        }
    }

    public static class CollectingTask extends SinkTask {
        @Override
        public void start(Map<String, String> props) {}

        @Override
        public void put(Collection<SinkRecord> records) {
            records.forEach(record -> CollectingSink.received.put((String) record.value(), Boolean.TRUE));
        }

        @Override
        public void stop() {}

        @Override
        public String version() {
            return "1";
        }
    }
}
