// A Curator LeaderLatch participant for the mixed-fleet tests (tests/integration/_foreign.py).
//
// Usage: java -cp <curator, zookeeper, guava, slf4j jars>:<classes> LatchParticipant
//            connectString path participantId [sessionTimeoutMs]
//
// Prints one line per event on stdout, flushed at once:
//   STARTED <node path>       our latch node exists
//   LEADER <epoch ms>         the latch says we lead
//   FOLLOWER <epoch ms>       the latch says we do not (any more)
//   CLOSING <epoch ms>        stdin said "close" or reached EOF: we stop acting as leader now,
//                             before the latch deletes its node
//   CLOSED <epoch ms>         latch and client closed; the process exits 0 next
// It may also be SIGKILLed, as a crashed leader.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.retry.RetryNTimes;

public final class LatchParticipant {
    private static final long STARTED_DEADLINE_MS = 30_000;

    private LatchParticipant() {}

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: LatchParticipant connectString path participantId [sessionTimeoutMs]");
            System.exit(2);
        }
        int sessionTimeoutMs = args.length > 3 ? Integer.parseInt(args[3]) : 2000;
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(args[0])
                .sessionTimeoutMs(sessionTimeoutMs)
                .connectionTimeoutMs(sessionTimeoutMs)
                .retryPolicy(new RetryNTimes(100, 100))
                .build();
        client.start();
        LeaderLatch latch = new LeaderLatch(client, args[1], args[2]);
        latch.addListener(new LeaderLatchListener() {
            @Override
            public void isLeader() {
                say("LEADER " + System.currentTimeMillis());
            }

            @Override
            public void notLeader() {
                say("FOLLOWER " + System.currentTimeMillis());
            }
        });
        latch.start();

        long deadline = System.currentTimeMillis() + STARTED_DEADLINE_MS;
        String ourPath;
        while ((ourPath = latch.getOurPath()) == null) {
            if (System.currentTimeMillis() > deadline) {
                System.err.println("no latch node after " + STARTED_DEADLINE_MS + " ms");
                System.exit(3);
            }
            Thread.sleep(5);
        }
        say("STARTED " + ourPath);

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null && !line.trim().equals("close")) {
            // Anything else on stdin is ignored.
        }
        say("CLOSING " + System.currentTimeMillis());
        latch.close(LeaderLatch.CloseMode.SILENT);
        client.close();
        say("CLOSED " + System.currentTimeMillis());
        System.exit(0);
    }
}
