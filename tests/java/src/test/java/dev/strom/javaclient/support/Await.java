package dev.strom.javaclient.support;

import java.time.Duration;
import java.util.Optional;

/**
 * The only way these tests wait: a condition polled against a deadline. Nothing synchronises on
 * a fixed sleep; the short pause between polls only keeps a loop from spinning.
 */
public final class Await {
    /** The default bound on a wait: generous for a loaded two-core machine. */
    public static final Duration DEFAULT = Duration.ofSeconds(30);
    private static final long POLL_INTERVAL_MS = 50;

    private Await() {}

    /** A check that may throw (a client call); an exception counts as "not yet". */
    @FunctionalInterface
    public interface Probe<T> {
        Optional<T> get() throws Exception;
    }

    @FunctionalInterface
    public interface Condition {
        boolean test() throws Exception;
    }

    /** Polls {@code condition} until it holds; fails after {@code timeout}, naming {@code what}. */
    public static void until(String what, Duration timeout, Condition condition) {
        value(what, timeout, () -> condition.test() ? Optional.of(Boolean.TRUE) : Optional.empty());
    }

    public static void until(String what, Condition condition) {
        until(what, DEFAULT, condition);
    }

    /** Polls {@code probe} until it yields a value and returns it; fails after {@code timeout}. */
    public static <T> T value(String what, Duration timeout, Probe<T> probe) {
        long deadline = System.nanoTime() + timeout.toNanos();
        Exception last = null;
        while (true) {
            try {
                Optional<T> result = probe.get();
                if (result.isPresent()) {
                    return result.get();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted waiting for " + what, e);
            } catch (Exception e) {
                last = e;
            }
            if (System.nanoTime() >= deadline) {
                throw new AssertionError("timed out after " + timeout.toMillis() + " ms waiting for " + what, last);
            }
            try {
                Thread.sleep(POLL_INTERVAL_MS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError("interrupted waiting for " + what, e);
            }
        }
    }

    public static <T> T value(String what, Probe<T> probe) {
        return value(what, DEFAULT, probe);
    }
}
