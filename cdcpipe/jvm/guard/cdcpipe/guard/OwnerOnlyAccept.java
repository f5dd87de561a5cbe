package cdcpipe.guard;

import java.io.BufferedReader;
import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The accept that {@link OwnerOnlyAgent} puts in Netty's place: a connection to a guarded port
 * is kept only when the account at its other end is this process's own.
 *
 * <p>The other end of a loopback connection is a socket of this machine, listed in the kernel's
 * socket table with the account that owns it: the row whose local address is the connection's
 * remote one, and whose remote address is the connection's local one. An IPv4 client is in
 * {@code /proc/net/tcp}, or, if its socket is an IPv6 one (Java's default), in
 * {@code /proc/net/tcp6} under the IPv4-mapped address; both are searched. A connection whose
 * row is missing (its client already gone) or owned by another account is closed before a byte
 * is read. Any error of the lookup closes the connection too: the guard fails closed.
 */
public final class OwnerOnlyAccept {
    private static volatile Set<Integer> guarded = Set.of();
    private static final long OWN_UID = ownUid();
    private static final Map<Integer, Long> refusedSinceLog = new TreeMap<>();
    private static long lastLog;

    private OwnerOnlyAccept() {}

    static void guard(Set<Integer> ports) {
        guarded = Set.copyOf(ports);
    }

    /** Netty's {@code SocketUtils.accept}, which only adds a privileged action around this call. */
    public static SocketChannel accept(ServerSocketChannel server) throws IOException {
        SocketChannel channel = server.accept();
        if (channel == null) {
            return null;
        }
        long uid = -1;
        try {
            InetSocketAddress local = (InetSocketAddress) channel.getLocalAddress();
            if (!guarded.contains(local.getPort())) {
                return channel;
            }
            uid = peerUid(local, (InetSocketAddress) channel.getRemoteAddress());
            if (uid == OWN_UID) {
                return channel;
            }
            channel.close();
            refused(local.getPort(), uid);
            return null;
        } catch (Throwable failure) {  // fail closed, and keep Netty's server channel open
            try {
                channel.close();
            } catch (IOException ignored) {
                // it is being dropped either way
            }
            return null;
        }
    }

    /** The account that owns the client end of the connection local <- remote, or -1. */
    static long peerUid(InetSocketAddress local, InetSocketAddress remote) throws IOException {
        InetAddress client = remote.getAddress();
        InetAddress server = local.getAddress();
        if (client instanceof Inet4Address && server instanceof Inet4Address) {
            long uid = uidIn("/proc/net/tcp", hex(client.getAddress(), remote.getPort()), hex(server.getAddress(), local.getPort()));
            if (uid >= 0) {
                return uid;
            }
            return uidIn("/proc/net/tcp6", hex(mapped(client), remote.getPort()), hex(mapped(server), local.getPort()));
        }
        return uidIn("/proc/net/tcp6", hex(client.getAddress(), remote.getPort()), hex(server.getAddress(), local.getPort()));
    }

    /** The uid of the row of {@code table} from {@code clientEnd} to {@code serverEnd}, or -1. */
    private static long uidIn(String table, String clientEnd, String serverEnd) throws IOException {
        try (BufferedReader rows = Files.newBufferedReader(Path.of(table))) {
            for (String row = rows.readLine(); row != null; row = rows.readLine()) {
                String[] fields = row.trim().split("\\s+", 9);
                if (fields.length > 7 && fields[1].equalsIgnoreCase(clientEnd) && fields[2].equalsIgnoreCase(serverEnd)) {
                    return Long.parseLong(fields[7]);
                }
            }
        } catch (NoSuchFileException noIpv6) {
            return -1;
        }
        return -1;
    }

    /** The IPv4-mapped IPv6 form of an IPv4 address ({@code ::ffff:a.b.c.d}). */
    static byte[] mapped(InetAddress v4) {
        byte[] out = new byte[16];
        out[10] = (byte) 0xff;
        out[11] = (byte) 0xff;
        System.arraycopy(v4.getAddress(), 0, out, 12, 4);
        return out;
    }

    /**
     * An address as the kernel's socket table writes it: each 32-bit word of the address in
     * the machine's byte order (little-endian here, as on every machine this runs on), then
     * the port in hex.
     */
    static String hex(byte[] bytes, int port) {
        StringBuilder out = new StringBuilder();
        for (int word = 0; word < bytes.length; word += 4) {
            for (int i = 3; i >= 0; i--) {
                out.append(String.format("%02X", bytes[word + i] & 0xff));
            }
        }
        return out.append(String.format(":%04X", port)).toString();
    }

    static long ownUid() {
        try {
            return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue();
        } catch (IOException | RuntimeException failure) {
            OwnerOnlyAgent.halt("cdcpipe guard: cannot tell this process's account (" + failure + ")");
            return -2;
        }
    }

    /**
     * At most one log line a second, counting per port what was refused since the last one:
     * another account's retries must not fill the log.
     */
    private static synchronized void refused(int port, long uid) {
        refusedSinceLog.merge(port, 1L, Long::sum);
        long now = System.nanoTime();
        if (lastLog != 0 && now - lastLog < 1_000_000_000L) {
            return;
        }
        System.err.println("cdcpipe guard: closed connection(s) from another account (last: uid " + (uid < 0 ? "unknown" : uid)
            + "), per port " + refusedSinceLog + "; only uid " + OWN_UID + " may connect");
        System.err.flush();
        lastLog = now;
        refusedSinceLog.clear();
    }
}
