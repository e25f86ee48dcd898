package dev.strom.javaclient.support;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * One {@code strom server} process on a free loopback port with its own data directory, the
 * Java twin of {@code tests/python/conftest.py}'s {@code Broker}.
 *
 * <p>The broker runs under a small {@code sh} wrapper that holds the read end of a pipe from this
 * JVM: closing the pipe (here, in {@link #close()}) or the JVM dying for any reason, SIGKILL
 * included, makes the wrapper SIGTERM the broker, so a killed test run leaves no brokers behind.
 * Ready means an ApiVersions v0 round trip over a raw socket answered without error.
 */
public final class StromBroker implements AutoCloseable {
    /** Bounds on this class's waits; a loaded two-core machine is slow, a healthy broker is not. */
    static final Duration READY_TIMEOUT = Duration.ofSeconds(30);
    static final Duration STOP_TIMEOUT = Duration.ofSeconds(15);
    static final int START_ATTEMPTS_MAX = 3;
    static final int LOG_TAIL_LINES = 60;

    /**
     * Runs "$@" (the broker) in the background and SIGTERMs it when fd 3, our pipe, reaches EOF;
     * exits with the broker's status when the broker exits. A background list's stdin would be
     * /dev/null, hence the explicit fd 3.
     */
    private static final String WRAPPER =
            "exec 3<&0; \"$@\" </dev/null & child=$!; "
                    + "( read -r _ <&3; kill -TERM \"$child\" 2>/dev/null ) & watcher=$!; "
                    + "wait \"$child\"; status=$?; kill \"$watcher\" 2>/dev/null; exit \"$status\"";

    private final Path root;
    private final Path dataDir;
    private final Path logPath;
    private final Map<String, String> settings;
    private int port;
    private Process process;
    private int starts;
    private Integer lastExitCode;

    private StromBroker(Path root, Map<String, String> settings) {
        this.root = root;
        this.dataDir = root.resolve("data");
        this.logPath = root.resolve("broker.log");
        this.settings = Map.copyOf(settings);
    }

    /** Starts a broker with these broker properties (Kafka names, passed as --set key=value). */
    public static StromBroker start(Map<String, String> settings) throws IOException, InterruptedException {
        Path bin = binary();
        if (!Files.isExecutable(bin)) {
            throw new IllegalStateException(
                    "no strom binary at " + bin + ": set STROM_BIN or run `cargo build -p strom`");
        }
        StromBroker broker = new StromBroker(Files.createTempDirectory("strom-java-"), settings);
        try {
            broker.startProcess(bin);
        } catch (RuntimeException | IOException e) {
            broker.close(); // keeps the directory: the broker did not stop cleanly, or never ran
            throw e;
        }
        return broker;
    }

    /** The broker binary: $STROM_BIN, else target/debug/strom of the repository. */
    public static Path binary() {
        String configured = System.getenv("STROM_BIN");
        if (configured != null && !configured.isEmpty()) {
            return Path.of(configured);
        }
        return repoRoot().resolve("target").resolve("debug").resolve("strom");
    }

    /** tests/java is two levels below the repository root; Maven runs tests in tests/java. */
    static Path repoRoot() {
        return Path.of(System.getProperty("user.dir")).toAbsolutePath().getParent().getParent();
    }

    public String bootstrap() {
        return "127.0.0.1:" + port;
    }

    public int port() {
        return port;
    }

    public Path dataDir() {
        return dataDir;
    }

    public Map<String, String> settings() {
        return settings;
    }

    private void startProcess(Path bin) throws IOException, InterruptedException {
        for (int attempt = 1; ; attempt++) {
            port = freePort();
            spawn(bin);
            try {
                waitReady();
                return;
            } catch (IOException | RuntimeException e) {
                boolean exited = !process.isAlive();
                stopProcess();
                // A port picked by binding to :0 can be taken before the broker binds it: retry
                // only when the broker exited (as it does when the bind fails).
                if (!exited || attempt == START_ATTEMPTS_MAX) {
                    throw new IllegalStateException(
                            "strom did not become ready on " + bootstrap() + ": " + e.getMessage() + "\n" + logTail(),
                            e);
                }
            }
        }
    }

    private void spawn(Path bin) throws IOException {
        Files.createDirectories(dataDir);
        List<String> command = new ArrayList<>(List.of("sh", "-c", WRAPPER, "strom-wrapper", bin.toString(),
                "server", "--listeners", bootstrap(), "--data-dir", dataDir.toString()));
        settings.forEach((key, value) -> {
            command.add("--set");
            command.add(key + "=" + value);
        });
        starts++;
        Files.writeString(logPath, "==== start #" + starts + ": " + String.join(" ", command.subList(4, command.size())) + "\n",
                StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
        ProcessBuilder builder = new ProcessBuilder(command)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logPath.toFile()));
        // The broker reads STROM_* variables as broker properties; tests set properties only with
        // --set, so none leak in from the caller's environment (STROM_LOG, the log filter, stays).
        Map<String, String> env = builder.environment();
        env.keySet().removeIf(key -> key.startsWith("STROM_") && !key.equals("STROM_LOG"));
        env.putIfAbsent("NO_COLOR", "1");
        process = builder.start();
    }

    private void waitReady() throws IOException, InterruptedException {
        long deadline = System.nanoTime() + READY_TIMEOUT.toNanos();
        IOException last = null;
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new IOException("strom exited with " + process.exitValue());
            }
            try {
                if (apiVersionsOk()) {
                    return;
                }
            } catch (IOException e) {
                last = e;
            }
            Thread.sleep(50);
        }
        throw new IOException("not ready after " + READY_TIMEOUT.toSeconds() + " s" + (last == null ? "" : " (" + last + ")"));
    }

    /** ApiVersions v0 over a raw socket: true when the broker answers with error 0. */
    private boolean apiVersionsOk() throws IOException {
        int correlationId = 7;
        byte[] clientId = "strom-java-tests".getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 2000);
            socket.setSoTimeout(2000);
            DataOutputStream out = new DataOutputStream(socket.getOutputStream());
            out.writeInt(2 + 2 + 4 + 2 + clientId.length);
            out.writeShort(18); // ApiVersions
            out.writeShort(0);
            out.writeInt(correlationId);
            out.writeShort(clientId.length);
            out.write(clientId);
            out.flush();
            DataInputStream in = new DataInputStream(socket.getInputStream());
            int size = in.readInt();
            if (size < 6) {
                return false;
            }
            byte[] body = new byte[size];
            in.readFully(body);
            int gotCorrelationId = ((body[0] & 0xff) << 24) | ((body[1] & 0xff) << 16) | ((body[2] & 0xff) << 8) | (body[3] & 0xff);
            short errorCode = (short) (((body[4] & 0xff) << 8) | (body[5] & 0xff));
            return gotCorrelationId == correlationId && errorCode == 0;
        }
    }

    /**
     * Stops the broker gracefully (SIGTERM) and starts it again on the same port and data
     * directory, ready once an ApiVersions round trip answers.
     */
    public void restart() throws IOException, InterruptedException {
        stopProcess();
        appendToLog("==== java tests: restart on port " + port + " ====\n");
        spawn(binary());
        waitReady();
    }

    /** Stops the broker gracefully (SIGTERM), SIGKILLs it after a deadline; returns its exit code. */
    public Integer stopProcess() throws InterruptedException {
        Process p = process;
        process = null;
        if (p == null) {
            return lastExitCode;
        }
        List<ProcessHandle> descendants = p.descendants().toList();
        try {
            OutputStream pipe = p.getOutputStream();
            pipe.close(); // the wrapper SIGTERMs the broker on EOF
        } catch (IOException ignored) {
            // already closed: the wrapper is gone
        }
        if (!p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
            descendants.forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            p.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            appendToLog("==== java tests: broker ignored SIGTERM; killed\n");
        }
        lastExitCode = p.isAlive() ? null : p.exitValue();
        return lastExitCode;
    }

    /** Stops the broker; removes its directory if it stopped cleanly (unless STROM_JAVA_KEEP=1). */
    @Override
    public void close() throws InterruptedException {
        Integer code = stopProcess();
        if (code != null && code == 0 && !"1".equals(System.getenv("STROM_JAVA_KEEP"))) {
            deleteTree(root);
        }
    }

    private void appendToLog(String text) {
        try {
            Files.writeString(logPath, text, StandardCharsets.UTF_8, java.nio.file.StandardOpenOption.CREATE,
                    java.nio.file.StandardOpenOption.APPEND);
        } catch (IOException ignored) {
            // only diagnostics
        }
    }

    /** The last lines of the broker's log, colour codes removed, for failure reports. */
    public String logTail() {
        List<String> lines;
        try {
            lines = Files.readAllLines(logPath, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "---- " + logPath + ": " + e;
        }
        List<String> tail = lines.subList(Math.max(0, lines.size() - LOG_TAIL_LINES), lines.size());
        StringBuilder text = new StringBuilder("---- " + logPath + " (last " + tail.size() + " lines) ----\n");
        for (String line : tail) {
            text.append(line.replaceAll("\u001b\\[[0-9;]*m", "")).append('\n');
        }
        return text.toString();
    }

    /** Bytes of record data on disk for one partition: its segment files (Kafka's layout). */
    public long partitionLogBytes(String topic, int partition) throws IOException {
        Path dir = dataDir.resolve(topic + "-" + partition);
        try (Stream<Path> files = Files.list(dir)) {
            return files.filter(f -> f.getFileName().toString().endsWith(".log")).mapToLong(f -> {
                try {
                    return Files.size(f);
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }).sum();
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket()) {
            socket.bind(new InetSocketAddress("127.0.0.1", 0));
            return socket.getLocalPort();
        }
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        } catch (IOException ignored) {
            // a leftover temp dir is harmless
        }
    }
}
