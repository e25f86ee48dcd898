package dev.strom.javaclient;

import dev.strom.javaclient.support.Strom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;

/**
 * The same transactions against a broker finalizing {@code transaction.version} 1 (KIP-890's
 * server-side checks only): the Java client stays on transactions v1.
 */
@Strom(settings = {"group.initial.rebalance.delay.ms=0", "transaction.version=1"})
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class TransactionsV1Test extends TransactionsContract {
    @Override
    short transactionVersion() {
        return 1;
    }
}
