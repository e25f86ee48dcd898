package dev.strom.javaclient;

import dev.strom.javaclient.support.Strom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;

/** Transactions against Strom's default, {@code transaction.version} 2: the client speaks v2. */
@Strom(settings = {"group.initial.rebalance.delay.ms=0"})
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class TransactionsTest extends TransactionsContract {
    @Override
    short transactionVersion() {
        return 2;
    }
}
