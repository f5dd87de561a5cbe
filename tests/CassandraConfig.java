// What Cassandra's own config loader makes of a cassandra.yaml and -Dcassandra.settings.*
// options (tests/test_runtime_parity.py runs it with `java CassandraConfig.java`, on the
// local runtime's cassandra-all jar): a Docker node's configuration, checked without Docker.
import org.apache.cassandra.config.DatabaseDescriptor;

public class CassandraConfig {
    public static void main(String[] args) {
        DatabaseDescriptor.toolInitialization();
        System.out.println("cdcpipe.commitlog_sync=" + DatabaseDescriptor.getCommitLogSync());
        System.out.println("cdcpipe.commitlog_sync_period_ms=" + DatabaseDescriptor.getCommitLogSyncPeriod());
        System.out.println("cdcpipe.concurrent_writes=" + DatabaseDescriptor.getConcurrentWriters());
        System.out.println("cdcpipe.tombstone_failure_threshold=" + DatabaseDescriptor.getTombstoneFailureThreshold());
        // The raw settings (the tool initialisation makes no authenticator objects): class names.
        var raw = DatabaseDescriptor.getRawConfig();
        System.out.println("cdcpipe.authenticator=" + (raw.authenticator == null ? "" : raw.authenticator.class_name));
        System.out.println("cdcpipe.authorizer=" + (raw.authorizer == null ? "" : raw.authorizer.class_name));
        System.out.println("cdcpipe.role_manager=" + (raw.role_manager == null ? "" : raw.role_manager.class_name));
    }
}
