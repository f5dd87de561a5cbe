package cdcpipe.spark;

import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.FilterConfig;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Base64;

/**
 * HTTP Basic login in front of a Spark web UI (master, worker, application).
 *
 * <p>Spark's UIs have no login of their own: {@code spark.acls.enable} only judges a user that a
 * filter has already authenticated. This is that filter, installed with {@code spark.ui.filters}.
 * Its one parameter, {@code credentials}, is the path of a 0600 file in cqlsh's credentials format
 * ({@code username = ...} and {@code password = ...} lines), so the password itself is never a
 * Spark setting: settings show on command lines ({@code -D}) and on the UI's environment page.
 *
 * <p>A file that cannot be read, or that holds no login, fails the UI's start (the daemon stops
 * and says why) instead of leaving it open.
 */
public final class UiLoginFilter implements Filter {
    private static final String REALM = "Basic realm=\"cdcpipe spark\", charset=\"UTF-8\"";
    private byte[] expected;

    @Override
    public void init(FilterConfig config) throws ServletException {
        String path = config.getInitParameter("credentials");
        if (path == null || path.isBlank()) {
            throw new ServletException(
                "UiLoginFilter needs spark." + UiLoginFilter.class.getName()
                    + ".param.credentials: the path of a credentials file (username = ..., password = ...)");
        }
        String username = null;
        String password = null;
        try {
            for (String line : Files.readAllLines(Path.of(path), StandardCharsets.UTF_8)) {
                int eq = line.indexOf('=');
                if (eq < 0) {
                    continue;
                }
                String key = line.substring(0, eq).strip();
                String value = line.substring(eq + 1).strip();
                if (key.equals("username")) {
                    username = value;
                } else if (key.equals("password")) {
                    password = value;
                }
            }
        } catch (IOException e) {
            throw new ServletException("cannot read the Spark UI's credentials file " + path + ": " + e.getClass().getSimpleName());
        }
        if (username == null || username.isEmpty() || username.contains(":") || password == null || password.isEmpty()) {
            throw new ServletException("the Spark UI's credentials file " + path + " has no username and password lines");
        }
        String token = Base64.getEncoder().encodeToString((username + ":" + password).getBytes(StandardCharsets.UTF_8));
        expected = ("Basic " + token).getBytes(StandardCharsets.UTF_8);
    }

    @Override
    public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
            throws IOException, ServletException {
        String header = ((HttpServletRequest) request).getHeader("Authorization");
        if (header != null && MessageDigest.isEqual(header.strip().getBytes(StandardCharsets.UTF_8), expected)) {
            chain.doFilter(request, response);
            return;
        }
        HttpServletResponse refused = (HttpServletResponse) response;
        refused.setHeader("WWW-Authenticate", REALM);
        refused.sendError(HttpServletResponse.SC_UNAUTHORIZED, "this Spark UI wants a login");
    }

    @Override
    public void destroy() {
    }
}
