package cdcpipe.guard;

import java.lang.instrument.ClassFileTransformer;
import java.lang.instrument.Instrumentation;
import java.security.ProtectionDomain;
import java.util.Set;
import java.util.TreeSet;

import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;

/**
 * A Java agent that lets only this process's own account connect to the listed local ports.
 *
 * <p>Why it exists: Apicurio Registry 3.3 serves health and metrics on Quarkus' management
 * interface, a second port whose authentication its build fixes off (the HTTP authorizer for
 * that port is never generated, so no runtime setting can add a login). Every other port of the
 * stack wants a credential; this one would answer any local account.
 *
 * <p>What it does: the registry's server sockets are Netty NIO channels, which accept through
 * {@code io.netty.util.internal.SocketUtils.accept}. The agent rewrites that one call in
 * {@code NioServerSocketChannel.doReadMessages} into {@link OwnerOnlyAccept#accept}, which
 * accepts, looks up the account that owns the other end of the connection (the kernel's socket
 * table, {@code /proc/net/tcp}), and closes the connection unless it is this process's own
 * account, the way PostgreSQL's {@code peer} authentication trusts the kernel for a Unix socket.
 * Netty then sees "nothing accepted" and goes on.
 *
 * <p>The agent's argument is the comma-separated list of ports to guard; connections to any
 * other port are left to the service's own authentication. It fails closed: it stops the JVM
 * (exit 70) instead of leaving a port open when Netty's class no longer has the call to rewrite,
 * or when a server channel of Netty's native transports (epoll, kqueue, io_uring), which it does
 * not guard, is loaded. Once the call is rewritten it logs {@code cdcpipe guard: armed}, which
 * {@code cdcpipe up} requires of the registry (SchemaRegistry.require_guard).
 */
public final class OwnerOnlyAgent {
    static final String TARGET = "io/netty/channel/socket/nio/NioServerSocketChannel";
    static final String ACCEPT_OWNER = "io/netty/util/internal/SocketUtils";
    static final String ACCEPT_DESC = "(Ljava/nio/channels/ServerSocketChannel;)Ljava/nio/channels/SocketChannel;";
    /** Server channels that accept without the rewritten call: loading one means an unguarded port. */
    static final Set<String> UNGUARDED = Set.of(
        "io/netty/channel/epoll/EpollServerSocketChannel",
        "io/netty/channel/kqueue/KQueueServerSocketChannel",
        "io/netty/incubator/channel/uring/IOUringServerSocketChannel",
        "io/netty/channel/uring/IoUringServerSocketChannel");

    private OwnerOnlyAgent() {}

    public static void premain(String args, Instrumentation inst) {
        Set<Integer> ports = new TreeSet<>();
        for (String port : (args == null ? "" : args).split(",")) {
            if (!port.isBlank()) {
                ports.add(Integer.parseInt(port.strip()));
            }
        }
        if (ports.isEmpty()) {
            halt("cdcpipe guard: no port to guard was given (-javaagent:cdcpipe-guard.jar=PORT[,PORT])");
        }
        OwnerOnlyAccept.guard(ports);
        inst.addTransformer(new ClassFileTransformer() {
            @Override
            public byte[] transform(ClassLoader loader, String name, Class<?> redefined, ProtectionDomain domain, byte[] bytes) {
                if (UNGUARDED.contains(name)) {
                    halt("cdcpipe guard: " + name + " was loaded: a transport the guard does not cover; ports " + ports + " would be open to every local account");
                }
                if (!TARGET.equals(name)) {
                    return null;
                }
                try {
                    byte[] rewritten = rewrite(bytes);
                    System.err.println("cdcpipe guard: armed on port(s) " + ports + ": only uid " + OwnerOnlyAccept.ownUid() + " may connect");
                    System.err.flush();
                    return rewritten;
                } catch (Throwable failure) {
                    halt("cdcpipe guard: could not rewrite " + TARGET + " (" + failure + "); ports " + ports + " would be open to every local account");
                    return null;
                }
            }
        });
    }

    /** {@code bytes} with every call to Netty's accept turned into {@link OwnerOnlyAccept#accept}. */
    static byte[] rewrite(byte[] bytes) {
        ClassReader reader = new ClassReader(bytes);
        ClassWriter writer = new ClassWriter(reader, 0);
        int[] rewritten = {0};
        reader.accept(new ClassVisitor(Opcodes.ASM9, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String desc, String signature, String[] exceptions) {
                return new MethodVisitor(Opcodes.ASM9, super.visitMethod(access, name, desc, signature, exceptions)) {
                    @Override
                    public void visitMethodInsn(int opcode, String owner, String method, String mdesc, boolean itf) {
                        if (opcode == Opcodes.INVOKESTATIC && ACCEPT_OWNER.equals(owner) && "accept".equals(method) && ACCEPT_DESC.equals(mdesc)) {
                            rewritten[0]++;
                            super.visitMethodInsn(opcode, "cdcpipe/guard/OwnerOnlyAccept", "accept", ACCEPT_DESC, false);
                        } else {
                            super.visitMethodInsn(opcode, owner, method, mdesc, itf);
                        }
                    }
                };
            }
        }, 0);
        if (rewritten[0] == 0) {
            throw new IllegalStateException("no call to " + ACCEPT_OWNER + ".accept" + ACCEPT_DESC);
        }
        return writer.toByteArray();
    }

    static void halt(String message) {
        System.err.println(message);
        System.err.flush();
        Runtime.getRuntime().halt(70);
    }
}
