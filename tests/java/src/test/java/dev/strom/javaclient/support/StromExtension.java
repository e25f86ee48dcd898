package dev.strom.javaclient.support;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolutionException;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.junit.platform.commons.support.AnnotationSupport;

/**
 * Starts one broker per test class annotated {@link Strom} (with that class's settings), hands
 * it to whoever asks for a {@link StromBroker} parameter, stops it after the class, and attaches
 * the tail of its log to every failure of the class's tests.
 */
public final class StromExtension
        implements BeforeAllCallback, AfterAllCallback, ParameterResolver, TestExecutionExceptionHandler,
                LifecycleMethodExecutionExceptionHandler {
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(StromExtension.class);
    private static final String KEY = "broker";

    @Override
    public void beforeAll(ExtensionContext context) throws Exception {
        if (ownBroker(context) != null) {
            return;
        }
        Class<?> testClass = context.getRequiredTestClass();
        Map<String, String> settings = new LinkedHashMap<>();
        Optional<Strom> annotation = AnnotationSupport.findAnnotation(testClass, Strom.class);
        for (String setting : annotation.map(Strom::settings).orElse(new String[0])) {
            int eq = setting.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("setting is not key=value: " + setting);
            }
            settings.put(setting.substring(0, eq), setting.substring(eq + 1));
        }
        context.getStore(NAMESPACE).put(KEY, StromBroker.start(settings));
    }

    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        StromBroker broker = ownBroker(context);
        if (broker != null) {
            context.getStore(NAMESPACE).remove(KEY);
            broker.close();
        }
    }

    private static StromBroker ownBroker(ExtensionContext context) {
        return context.getStore(NAMESPACE).get(KEY, StromBroker.class);
    }

    /** The broker of this context's class, or of an enclosing one (nested classes share it). */
    private static StromBroker broker(ExtensionContext context) {
        for (Optional<ExtensionContext> c = Optional.of(context); c.isPresent(); c = c.get().getParent()) {
            StromBroker broker = ownBroker(c.get());
            if (broker != null) {
                return broker;
            }
        }
        return null;
    }

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
        return parameter.getParameter().getType() == StromBroker.class;
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
        StromBroker broker = broker(context);
        if (broker == null) {
            throw new ParameterResolutionException("no strom broker started for " + context.getDisplayName());
        }
        return broker;
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        throw withLogTail(context, throwable);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        throw withLogTail(context, throwable);
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        throw withLogTail(context, throwable);
    }

    @Override
    public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable throwable) throws Throwable {
        throw withLogTail(context, throwable);
    }

    private static Throwable withLogTail(ExtensionContext context, Throwable throwable) {
        StromBroker broker = broker(context);
        if (broker != null) {
            throwable.addSuppressed(new BrokerLog(broker.logTail()));
        }
        return throwable;
    }

    /** Carries a broker's log tail into a failure report; not an error of its own. */
    static final class BrokerLog extends Exception {
        BrokerLog(String tail) {
            super("strom broker log\n" + tail, null, false, false);
        }
    }
}
