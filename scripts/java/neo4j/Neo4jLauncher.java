/*
 * scripts/java/neo4j/Neo4jLauncher.java - the Neo4j server of the tests and `make run`
 * (scripts/stack.sh neo4j): Neo4j 5.26 community edition, in process through neo4j-harness,
 * with Bolt and HTTP on fixed loopback ports, authentication on for user neo4j, and its
 * store in a directory that outlives the process. It stays in the foreground until SIGTERM,
 * then shuts the databases down cleanly (checkpoint, so the next start needs no recovery).
 * scripts/deps.sh compiles it into a jar beside the harness's jars and runs it once with
 * --self-test.
 *
 * The harness is made for throw-away test servers; three of its defaults are undone here:
 *  - auth off: auth is on, and user neo4j's password is the secret file's. On the first start
 *    (no system database yet) it is set before any port opens, by Neo4j's own initial-password
 *    mechanism: the set-initial-password admin command, run in process, writes
 *    data/dbms/auth.ini, from which the system database takes the user when it is created.
 *    At every later start it is set again through the system database (ALTER USER), so a
 *    regenerated secret file still lets clients in; the old password stays valid until then.
 *  - random ports on localhost: Bolt and HTTP listen on 127.0.0.1:PORT as given; HTTPS and
 *    the routing connector are off, so nothing listens on another address or port.
 *  - a random folder that close() deletes: neo4j_home is --home (data/ and logs/ under it);
 *    the harness's random folder, under --home/harness, then holds only its user log, which is
 *    appended to logs/neo4j.log when the server stops (or, after a kill, at the next start).
 *
 * Must never: print the password, listen off loopback, or delete anything outside
 * --home/harness but the consumed auth.ini.
 *
 * Usage: java [JVM flags] -jar neo4j-launcher.jar --home DIR --bolt-port N --http-port N
 *          --password-file FILE [--pagecache BYTES] [--self-test]
 * --self-test: ports may be 0 (any free port); once up, one query over Bolt and one over HTTP
 * with the password, one HTTP request with a wrong password (must be refused), then a clean
 * stop and exit 0 (1 when a check failed).
 */

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

import org.neo4j.cli.ExecutionContext;
import org.neo4j.commandline.admin.security.SetInitialPasswordCommand;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.connectors.HttpsConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.driver.AuthTokens;
import org.neo4j.driver.Driver;
import org.neo4j.driver.GraphDatabase;
import org.neo4j.graphdb.QueryExecutionException;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilders;
import picocli.CommandLine;

public final class Neo4jLauncher {
    private static final String HOST = "127.0.0.1";
    private static final String USER = "neo4j";
    /** The harness names its server folder with 32 hex digits (an md5); close() deletes it. */
    private static final String HARNESS_FOLDER_NAME = "[0-9a-f]{32}";
    private static final Set<String> OPTIONS = Set.of("--home", "--bolt-port", "--http-port",
            "--password-file", "--pagecache");
    /** Enough for the tests' and make run's graphs; the heap is set by the JVM flags. */
    private static final long DEFAULT_PAGECACHE_BYTES = 64L << 20;

    private final Path home;
    private final Path harnessDir;
    private final int boltPort;
    private final int httpPort;
    private final Path passwordFile;
    private final long pagecacheBytes;
    private final boolean selfTest;

    private Neo4jLauncher(Map<String, String> args, boolean selfTest) {
        this.selfTest = selfTest;
        home = Path.of(required(args, "--home")).toAbsolutePath().normalize();
        harnessDir = home.resolve("harness");
        boltPort = port(args, "--bolt-port");
        httpPort = port(args, "--http-port");
        passwordFile = Path.of(required(args, "--password-file"));
        try {
            pagecacheBytes = Long.parseLong(args.getOrDefault("--pagecache",
                    String.valueOf(DEFAULT_PAGECACHE_BYTES)));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--pagecache: not a number of bytes");
        }
    }

    public static void main(String[] argv) throws Exception {
        Neo4jLauncher launcher;
        try {
            Map<String, String> args = new HashMap<>();
            boolean selfTest = parse(argv, args);
            launcher = new Neo4jLauncher(args, selfTest);
        } catch (IllegalArgumentException e) {
            System.err.println("neo4j-launcher: " + e.getMessage());
            System.err.println("usage: java -jar neo4j-launcher.jar --home DIR --bolt-port N"
                    + " --http-port N --password-file FILE [--pagecache BYTES] [--self-test]");
            System.exit(2);
            return;
        }
        System.exit(launcher.run());
    }

    private int run() throws Exception {
        String password = readPassword();
        Files.createDirectories(harnessDir);
        keepUserLogs();
        removeHarnessFolders();
        boolean firstStart = !Files.isDirectory(home.resolve("data/databases/system"));
        if (firstStart) {
            setInitialPassword(password);
        }

        long t0 = System.nanoTime();
        Neo4j neo4j = Neo4jBuilders.newInProcessBuilder(harnessDir)
                .withConfig(GraphDatabaseSettings.neo4j_home, home)
                .withConfig(GraphDatabaseSettings.auth_enabled, true)
                .withConfig(GraphDatabaseSettings.default_listen_address, new SocketAddress(HOST))
                .withConfig(GraphDatabaseSettings.default_advertised_address, new SocketAddress(HOST))
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.listen_address, new SocketAddress(HOST, boltPort))
                .withConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .withConfig(HttpConnector.enabled, true)
                .withConfig(HttpConnector.listen_address, new SocketAddress(HOST, httpPort))
                .withConfig(HttpsConnector.enabled, false)
                .withConfig(GraphDatabaseSettings.routing_enabled, false)
                .withConfig(GraphDatabaseSettings.udc_enabled, false)
                .withConfig(GraphDatabaseSettings.pagecache_memory, pagecacheBytes)
                // Bolt's event loops wait out a 5 s quiet period, twice, after the databases
                // have already stopped: 10 s of every stop for nothing.
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period, 0)
                .withConfig(GraphDatabaseInternalSettings.netty_server_shutdown_timeout,
                        Duration.ofSeconds(5))
                .build();
        if (firstStart) {
            // The system database has taken the user from it; only a hash, but no use now.
            Files.deleteIfExists(home.resolve("data/dbms/auth.ini"));
        } else {
            syncPassword(neo4j, password);
        }
        say("ready: bolt " + neo4j.boltURI() + ", http " + neo4j.httpURI() + ", user " + USER
                + ", home " + home + (firstStart ? " (new store)" : "") + ", started in "
                + (System.nanoTime() - t0) / 1_000_000 + " ms");

        if (selfTest) {
            boolean ok = selfTest(neo4j, password);
            stop(neo4j);
            return ok ? 0 : 1;
        }
        // SIGTERM (and SIGINT) run the shutdown hooks; the JVM exits when they return. A
        // SIGTERM during build() finds no hook yet: the JVM just exits and the next start
        // recovers the store from its transaction logs.
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stop(neo4j);
            stopped.countDown();
        }, "neo4j-launcher-shutdown"));
        stopped.await();
        return 0;
    }

    private void stop(Neo4j neo4j) {
        say("stopping");
        try {
            // Not neo4j.close(): that is this shutdown plus deleting the harness folder,
            // which would take its user log along.
            neo4j.databaseManagementService().shutdown();
            keepUserLogs();
            removeHarnessFolders();
            say("stopped");
        } catch (Throwable e) {
            say("stop failed: " + e);
        }
    }

    /** First start: the password the system database gives user neo4j when it is created. */
    private void setInitialPassword(String password) {
        ExecutionContext ctx = new ExecutionContext(home, home.resolve("conf"));
        int rc = new CommandLine(new SetInitialPasswordCommand(ctx)).execute(password);
        if (rc != 0) {
            throw new IllegalStateException("set-initial-password failed with exit code " + rc);
        }
    }

    /** A later start: the secret file is the truth, whatever the store last had. */
    private static void syncPassword(Neo4j neo4j, String password) {
        try {
            neo4j.databaseManagementService().database("system").executeTransactionally(
                    "ALTER USER " + USER + " SET PASSWORD $password CHANGE NOT REQUIRED",
                    Map.of("password", password));
            say("password of user " + USER + " set from the secret file");
        } catch (QueryExecutionException e) {
            // Neo4j refuses to "change" a password to the one it already has: nothing to do.
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        }
    }

    /** --self-test: the checks a client would make, over both protocols. */
    private static boolean selfTest(Neo4j neo4j, String password) throws Exception {
        boolean ok = true;
        try (Driver driver = GraphDatabase.driver(neo4j.boltURI(), AuthTokens.basic(USER, password))) {
            long n = driver.executableQuery("MERGE (n:SelfTest {id: 1}) RETURN count(n) AS n")
                    .execute().records().get(0).get("n").asLong();
            if (n != 1) {
                say("self-test: a MERGE over Bolt returned " + n + " nodes, not 1");
                ok = false;
            }
        }
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        URI tx = neo4j.httpURI().resolve("/db/neo4j/tx/commit");
        for (String pw : new String[] {password, "not-" + password}) {
            HttpRequest request = HttpRequest.newBuilder(tx)
                    .timeout(Duration.ofSeconds(20))
                    .header("Authorization", "Basic " + Base64.getEncoder().encodeToString(
                            (USER + ":" + pw).getBytes(StandardCharsets.UTF_8)))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(
                            "{\"statements\":[{\"statement\":\"MATCH (n:SelfTest) RETURN count(n)\"}]}"))
                    .build();
            HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
            int want = pw.equals(password) ? 200 : 401;
            if (response.statusCode() != want) {
                say("self-test: HTTP with " + (want == 200 ? "the" : "a wrong") + " password answered "
                        + response.statusCode() + ", not " + want);
                ok = false;
            }
        }
        say("self-test " + (ok ? "passed" : "FAILED"));
        return ok;
    }

    private String readPassword() throws IOException {
        String password = Files.readString(passwordFile, StandardCharsets.UTF_8).strip();
        if (password.length() < 8) {
            // Neo4j's minimum (dbms.security.auth_minimum_password_length).
            throw new IllegalStateException(passwordFile + ": a password of at least 8"
                    + " characters is needed");
        }
        return password;
    }

    /** Appends the user log (neo4j.log) of every harness folder to logs/neo4j.log. */
    private void keepUserLogs() throws IOException {
        Path logs = home.resolve("logs");
        Files.createDirectories(logs);
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(harnessDir, Neo4jLauncher::isHarnessFolder);
             OutputStream out = Files.newOutputStream(logs.resolve("neo4j.log"),
                     StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
            for (Path dir : dirs) {
                Path log = dir.resolve("neo4j.log");
                if (Files.isRegularFile(log)) {
                    try (InputStream in = Files.newInputStream(log)) {
                        in.transferTo(out);
                    }
                }
            }
        }
    }

    /** Deletes the harness's folders: at start those a killed launcher left, at stop its own. */
    private void removeHarnessFolders() throws IOException {
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(harnessDir, Neo4jLauncher::isHarnessFolder)) {
            for (Path dir : dirs) {
                try (Stream<Path> paths = Files.walk(dir)) {
                    for (Path p : (Iterable<Path>) paths.sorted(Comparator.reverseOrder())::iterator) {
                        Files.delete(p);
                    }
                }
            }
        }
    }

    private static boolean isHarnessFolder(Path p) {
        return Files.isDirectory(p) && p.getFileName().toString().matches(HARNESS_FOLDER_NAME);
    }

    private static void say(String message) {
        System.out.println(Instant.now() + " neo4j-launcher: " + message);
        System.out.flush();
    }

    /** Fills args with the --name value pairs; returns whether --self-test was given. */
    private static boolean parse(String[] argv, Map<String, String> args) {
        boolean selfTest = false;
        for (int i = 0; i < argv.length; i++) {
            if (argv[i].equals("--self-test")) {
                selfTest = true;
            } else if (OPTIONS.contains(argv[i]) && i + 1 < argv.length) {
                args.put(argv[i], argv[++i]);
            } else {
                throw new IllegalArgumentException("unknown or incomplete argument: " + argv[i]);
            }
        }
        return selfTest;
    }

    private static String required(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null || v.isEmpty()) {
            throw new IllegalArgumentException(name + " is required");
        }
        return v;
    }

    /** A TCP port; 0 (any free port) only for --self-test. */
    private int port(Map<String, String> args, String name) {
        int port;
        try {
            port = Integer.parseInt(required(args, name));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + ": not a number");
        }
        if (port < (selfTest ? 0 : 1) || port > 65535) {
            throw new IllegalArgumentException(name + ": " + port + " is not a TCP port");
        }
        return port;
    }
}
