package cdcpipe.connect;

import io.apicurio.registry.utils.converter.AvroConverter;
import io.apicurio.registry.utils.converter.avro.AvroData;
import io.apicurio.registry.utils.converter.avro.AvroDataConfig;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Map;
import org.apache.avro.generic.IndexedRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.storage.Converter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Apicurio's {@link AvroConverter}, with its schema work done once per Connect schema instead of
 * once per record. Same bytes, same registry.
 *
 * <p>Why: for every record, Apicurio 2.6's serializer writes the record's whole Avro schema out as
 * JSON and looks it up by that text (its cache by topic misses when it registers schemas itself),
 * and its {@code AvroData} finds the Avro schema by hashing and comparing the whole Connect
 * schema. Debezium's envelope schema is large, and a profile of the worker under load spent a
 * quarter of its samples there (docs/benchmarks.md). Debezium keeps one schema object per table
 * version, so identity is a sound key: a new table version is a new object, which goes through
 * Apicurio's path once and registers as before.
 *
 * <p>How: the first record of a schema object goes through Apicurio's converter; its output's
 * Confluent header (the magic byte and the schema's id) and the Avro schema are kept. Later
 * records are converted with the kept Avro schema and written behind the kept header, with the
 * kind of writer Apicurio's serializer uses for them (a generic one: AvroData makes generic
 * records). The first {@value #COMPARED} records of each schema are also converted by Apicurio
 * and compared byte for byte; when all agree the worker logs it once, and on any difference
 * that schema goes back to Apicurio's path for good, and the worker logs that. What is kept is
 * forgotten after Apicurio's own {@code apicurio.registry.check-period-ms}, as Apicurio forgets
 * its cache, so an id the registry changed is learned again as soon as Apicurio learns it.
 * Reading (toConnectData) is Apicurio's.
 */
public final class SchemaOnceAvroConverter implements Converter {
    private static final Logger LOG = LoggerFactory.getLogger(SchemaOnceAvroConverter.class);
    /** Records per schema also converted by Apicurio and compared with this converter's bytes. */
    static final int COMPARED = 3;
    /** Schemas kept at most; more (a table changing shape all day) starts the map afresh. */
    static final int KEPT = 256;
    private static final byte MAGIC = 0;
    /** Apicurio's setting for how long its cache keeps a schema, and its default. */
    private static final String CHECK_PERIOD = "apicurio.registry.check-period-ms";
    private static final long CHECK_PERIOD_DEFAULT_MS = 30_000;

    private final AvroConverter<Object> apicurio = new AvroConverter<>();
    private final Map<Schema, Known> known = Collections.synchronizedMap(new IdentityHashMap<>());
    private Exposed avroData;
    private long keepNanos;

    /** What a schema object's first record taught: the header, the Avro schema, its writer. */
    private static final class Known {
        final byte[] header;
        final org.apache.avro.Schema avro;
        final GenericDatumWriter<Object> writer;
        final long learnedAt = System.nanoTime();
        volatile int compareLeft = COMPARED;
        volatile boolean apicuriosOnly;

        Known(byte[] header, org.apache.avro.Schema avro) {
            this.header = header;
            this.avro = avro;
            this.writer = new GenericDatumWriter<>(avro);
        }

        int id() {
            return ((header[1] & 0xff) << 24) | ((header[2] & 0xff) << 16) | ((header[3] & 0xff) << 8) | (header[4] & 0xff);
        }
    }

    /** {@link AvroData}'s conversion for an Avro schema already known (it is protected there). */
    private static final class Exposed extends AvroData {
        Exposed(AvroDataConfig config) {
            super(config);
        }

        Object convert(Schema schema, org.apache.avro.Schema avro, Object value) {
            return fromConnectData(schema, avro, value);
        }
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        apicurio.configure(configs, isKey);
        avroData = new Exposed(new AvroDataConfig(configs));
        Object period = configs.get(CHECK_PERIOD);
        long ms = period == null ? CHECK_PERIOD_DEFAULT_MS : Long.parseLong(period.toString().trim());
        keepNanos = Math.max(0, ms) * 1_000_000L;
    }

    @Override
    public byte[] fromConnectData(String topic, Schema schema, Object value) {
        return fromConnectData(topic, null, schema, value);
    }

    @Override
    public byte[] fromConnectData(String topic, Headers headers, Schema schema, Object value) {
        if (schema == null || value == null) {
            return apicurio.fromConnectData(topic, headers, schema, value);
        }
        Known k = known.get(schema);
        if (k != null && System.nanoTime() - k.learnedAt > keepNanos) {
            known.remove(schema); // as old as Apicurio lets its own cache get: learn it again
            k = null;
        }
        if (k == null) {
            byte[] theirs = apicurio.fromConnectData(topic, headers, schema, value);
            learn(schema, theirs);
            return theirs;
        }
        if (k.apicuriosOnly) {
            return apicurio.fromConnectData(topic, headers, schema, value);
        }
        Object avro = avroData.convert(schema, k.avro, value);
        if (!(avro instanceof IndexedRecord)) {
            k.apicuriosOnly = true;
            return apicurio.fromConnectData(topic, headers, schema, value);
        }
        byte[] ours = write(k, avro);
        if (k.compareLeft > 0) {
            byte[] theirs = apicurio.fromConnectData(topic, headers, schema, value);
            if (!Arrays.equals(ours, theirs)) {
                k.apicuriosOnly = true;
                LOG.warn("cdcpipe: a record of schema {} on topic {} came out differently from Apicurio's converter; that schema uses Apicurio's path from now on",
                        k.avro.getFullName(), topic);
                return theirs;
            }
            if (--k.compareLeft == 0) {
                LOG.info("cdcpipe: schema {} (id {}) on topic {}: {} records written as Apicurio writes them; writing it here from now on",
                        k.avro.getFullName(), k.id(), topic, COMPARED);
            }
        }
        return ours;
    }

    private void learn(Schema schema, byte[] theirs) {
        if (theirs == null || theirs.length < 5 || theirs[0] != MAGIC) {
            return; // not the Confluent framing: nothing to learn, Apicurio's path every time
        }
        synchronized (known) {
            if (known.size() >= KEPT) {
                known.clear();
            }
            known.put(schema, new Known(Arrays.copyOf(theirs, 5), avroData.fromConnectSchema(schema)));
        }
    }

    private static byte[] write(Known k, Object avro) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(512);
        out.write(k.header, 0, k.header.length);
        BinaryEncoder encoder = EncoderFactory.get().directBinaryEncoder(out, null);
        try {
            k.writer.write(avro, encoder);
            encoder.flush();
        } catch (IOException | RuntimeException e) {
            throw new DataException("cdcpipe: could not write a record of schema " + k.avro.getFullName() + " as Avro", e);
        }
        return out.toByteArray();
    }

    @Override
    public ConfigDef config() {
        return apicurio.config();
    }

    @Override
    public void close() {
        known.clear();
        apicurio.close();
    }

    @Override
    public SchemaAndValue toConnectData(String topic, byte[] value) {
        return apicurio.toConnectData(topic, value);
    }

    @Override
    public SchemaAndValue toConnectData(String topic, Headers headers, byte[] value) {
        return apicurio.toConnectData(topic, headers, value);
    }
}
