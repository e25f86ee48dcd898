package dev.strom.javaclient.support;

import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * A test class that runs against its own {@code strom server}: {@link StromExtension} starts one
 * before the class's first test and stops it after the last; test methods, constructors and
 * {@code @BeforeAll} methods receive it as a {@link StromBroker} parameter. A subclass may
 * annotate itself again to run the same tests against a broker with other settings.
 */
@Target(ElementType.TYPE)
@Retention(RetentionPolicy.RUNTIME)
@Inherited
@ExtendWith(StromExtension.class)
public @interface Strom {
    /** Broker properties by Kafka name, "key=value", passed as {@code --set key=value}. */
    String[] settings() default {};
}
