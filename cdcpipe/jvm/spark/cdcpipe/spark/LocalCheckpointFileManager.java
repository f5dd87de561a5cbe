package cdcpipe.spark;

import java.io.BufferedOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager;

/**
 * The streaming job's checkpoint file manager ({@code spark.sql.streaming.checkpointFileManagerClass})
 * for a checkpoint on a local disk: every micro-batch's offset and commit files written without
 * starting a process.
 *
 * <p>Spark's default manager goes through Hadoop's {@code FileContext}. On a local disk, without
 * Hadoop's native library (pyspark ships none), that starts a shell command for nearly every step:
 * {@code chmod} for each new file and its {@code .crc}, and {@code readlink} several times per
 * rename, about twenty processes forked from the driver's JVM per micro-batch. The offset file is
 * written before the batch runs, so those forks were on every change's path, and they cost the
 * driver CPU at ten batches a second. Spark's other manager, on Hadoop's {@code FileSystem} API,
 * drops the {@code readlink}s but still starts {@code chmod} twice per file.
 *
 * <p>This one is that {@code FileSystem} manager with one step replaced: the temporary file is
 * written with Java's own file API and synced to disk when closed, then renamed into place by
 * Spark's code as before: its check that the final file does not exist yet, then an atomic
 * {@code rename(2)}. What changes on disk: no {@code .crc} beside the file (Hadoop's local file
 * system reads a file without one unverified), and the file is on disk before the rename makes it
 * visible, where Hadoop's local streams never sync. Files written earlier, with their {@code .crc},
 * are read and deleted as before. A checkpoint on any other file system is left to Spark's code.
 */
public final class LocalCheckpointFileManager extends FileSystemBasedCheckpointFileManager {
    private final boolean local;

    public LocalCheckpointFileManager(Path path, Configuration hadoopConf) {
        super(path, hadoopConf);
        this.local = "file".equals(fs().getUri().getScheme());
    }

    @Override
    public FSDataOutputStream createTempFile(Path path) {
        if (!local) {
            return super.createTempFile(path);
        }
        File file = new File(fs().makeQualified(path).toUri());
        try {
            Files.createDirectories(file.toPath().getParent()); // as Hadoop's create does
            FileOutputStream out = new FileOutputStream(file, false);
            return new FSDataOutputStream(new BufferedOutputStream(new SyncedOnClose(out), 8192), null);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create the checkpoint file " + file, e);
        }
    }

    /** Flushes, syncs the file to disk, then closes it. */
    private static final class SyncedOnClose extends FilterOutputStream {
        private final FileOutputStream file;
        private boolean closed;

        SyncedOnClose(FileOutputStream file) {
            super(file);
            this.file = file;
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            file.write(b, off, len);
        }

        @Override
        public void close() throws IOException {
            if (closed) {
                return;
            }
            closed = true;
            try (FileOutputStream closing = file) {
                closing.flush();
                closing.getFD().sync();
            }
        }
    }
}
