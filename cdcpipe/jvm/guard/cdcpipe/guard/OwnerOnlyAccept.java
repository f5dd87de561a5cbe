package cdcpipe.guard;

import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * The accept that {@link OwnerOnlyAgent} puts in Netty's place: a connection to a guarded port
 * is kept only when the account at its other end is this process's own.
 *
 * <p>The other end of a loopback connection is a socket of this machine, listed in the kernel's
 * socket table ({@code /proc/net/tcp}, {@code /proc/net/tcp6}) with the account that owns it:
 * the row whose local address is the connection's remote one, and whose remote address is the
 * connection's local one. A connection whose row is missing (its client already gone) or owned
 * by another account is closed before a byte is read. Errors of the lookup close the connection
 * too: the guard fails closed.
 */
public final class OwnerOnlyAccept {
    private static volatile Set<Integer> guarded = Set.of();
    private static final long OWN_UID = ownUid();
    private static long lastLog;
    private static long refusedSinceLog;

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
        InetSocketAddress local;
        InetSocketAddress remote;
        try {
            local = (InetSocketAddress) channel.getLocalAddress();
            remote = (InetSocketAddress) channel.getRemoteAddress();
        } catch (IOException gone) {
            channel.close();
            return null;
        }
        if (!guarded.contains(local.getPort())) {
            return channel;
        }
        long uid = peerUid(local, remote);
        if (uid == OWN_UID) {
            return channel;
        }
        channel.close();
        refused(local.getPort(), uid);
        return null;
    }

    /** The account that owns the client end of the connection local <- remote, or -1. */
    static long peerUid(InetSocketAddress local, InetSocketAddress remote) {
        boolean v4 = remote.getAddress() instanceof Inet4Address;
        String clientEnd = hex(remote.getAddress(), remote.getPort());
        String serverEnd = hex(local.getAddress(), local.getPort());
        List<String> rows;
        try {
            rows = Files.readAllLines(Path.of(v4 ? "/proc/net/tcp" : "/proc/net/tcp6"));
        } catch (IOException | RuntimeException unreadable) {
            return -1;
        }
        for (String row : rows) {
            String[] fields = row.trim().split("\\s+");
            if (fields.length > 7 && fields[1].equalsIgnoreCase(clientEnd) && fields[2].equalsIgnoreCase(serverEnd)) {
                try {
                    return Long.parseLong(fields[7]);
                } catch (NumberFormatException odd) {
                    return -1;
                }
            }
        }
        return -1;
    }

    /**
     * An address as the kernel's socket table writes it: each 32-bit word of the address in
     * the machine's byte order (little-endian here, as on every machine this runs on), then
     * the port in hex.
     */
    static String hex(InetAddress address, int port) {
        byte[] bytes = address.getAddress();
        StringBuilder out = new StringBuilder();
        for (int word = 0; word < bytes.length; word += 4) {
            for (int i = 3; i >= 0; i--) {
                out.append(String.format("%02X", bytes[word + i] & 0xff));
            }
        }
        return out.append(String.format(":%04X", port)).toString();
    }

    private static long ownUid() {
        try {
            return ((Number) Files.getAttribute(Path.of("/proc/self"), "unix:uid")).longValue();
        } catch (IOException | RuntimeException failure) {
            OwnerOnlyAgent.halt("cdcpipe guard: cannot tell this process's account (" + failure + ")");
            return -2;
        }
    }

    /** One log line per second at most: another account's retries must not fill the log. */
    private static synchronized void refused(int port, long uid) {
        refusedSinceLog++;
        long now = System.nanoTime();
        if (lastLog == 0 || now - lastLog > 1_000_000_000L) {
            System.err.println("cdcpipe guard: closed " + refusedSinceLog + " connection(s) to port " + port
                + " from another account (uid " + (uid < 0 ? "unknown" : uid) + "); only uid " + OWN_UID + " may connect");
            System.err.flush();
            lastLog = now;
            refusedSinceLog = 0;
        }
    }
}
