#!/usr/bin/env bash
# Records real workloads as pagetraces for measuring what pagemill tunes
# (MECOM's class rule, the auto codec) on memory it was not tuned on.
# Debian: installs memcached and uses the JDK if present. Writes to
# ${OUT:-/tmp/pagemill-traces}; the traces are data, not part of the repo.
#   scripts/record-workloads.sh [memcached] [jvm]     (default: both)
# Needs `npm run build` first; runs as root or with ptrace rights over its children.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/pagemill-traces}"
mkdir -p "$out"
pagemill() { node dist/cli/bin.js "$@"; }
want=("${@:-memcached jvm}")

record_memcached() {
  command -v memcached >/dev/null || { apt-get update -qq && apt-get install -y -qq memcached >/dev/null; }
  memcached -u root -m 256 -p 21211 -U 0 -l 127.0.0.1 &
  local server=$!
  sleep 1
  # A cache under a set-heavy load: keys with a skewed popularity, values of
  # mixed sizes and content (text, numbers, random bytes as hex).
  python3 - <<'PY' &
import random, socket, time
s = socket.create_connection(("127.0.0.1", 21211))
r = random.Random(7)
words = [("".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(3, 10)))) for _ in range(2000)]
end = time.time() + 16
n = 0
while time.time() < end:
    k = int(r.paretovariate(1.2) * 10) % 200000
    kind = r.random()
    if kind < 0.5: v = " ".join(r.choice(words) for _ in range(r.randint(5, 120)))
    elif kind < 0.8: v = ",".join(str(r.randint(0, 10**9)) for _ in range(r.randint(4, 60)))
    else: v = r.randbytes(r.randint(16, 600)).hex()
    b = v.encode()
    s.sendall(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (k, len(b), b))
    n += 1
    if n % 20000 == 0: time.sleep(0.01)
PY
  local load=$!
  sleep 3
  pagemill record --pid "$server" --interval 250ms --duration 10s -o "$out/memcached.ptrace.gz"
  kill "$load" "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}

record_jvm() {
  command -v javac >/dev/null || { echo "record-workloads: no JDK (apt-get install openjdk-17-jdk-headless)"; return 1; }
  local dir
  dir=$(mktemp -d)
  # A service-like JVM: a HashMap of records updated at random, strings built
  # and dropped (young-generation garbage), a sorted index rebuilt now and then.
  cat > "$dir/Churn.java" <<'JAVA'
import java.util.*;
public class Churn {
  record Item(long id, String name, double price, int[] history) {}
  public static void main(String[] a) throws Exception {
    Random r = new Random(11);
    Map<Long, Item> items = new HashMap<>();
    long end = System.currentTimeMillis() + 16000;
    long ops = 0;
    while (System.currentTimeMillis() < end) {
      long id = (long) (Math.abs(r.nextGaussian()) * 60000);
      int[] h = new int[8 + r.nextInt(24)];
      for (int i = 0; i < h.length; i++) h[i] = r.nextInt(1000);
      items.put(id, new Item(id, "item-" + id + "-" + Long.toHexString(r.nextLong()), r.nextDouble() * 100, h));
      if (++ops % 200000 == 0) {
        List<Item> sorted = new ArrayList<>(items.values());
        sorted.sort(Comparator.comparingDouble(Item::price));
        Thread.sleep(5);
      }
    }
    System.out.println(items.size());
  }
}
JAVA
  javac -d "$dir" "$dir/Churn.java"
  java -Xms128m -Xmx128m -XX:+UseSerialGC -cp "$dir" Churn &
  local jvm=$!
  sleep 3
  pagemill record --pid "$jvm" --interval 500ms --duration 8s -o "$out/jvm-churn.ptrace.gz"
  kill "$jvm" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}

for w in ${want[@]}; do
  case "$w" in
    memcached) record_memcached ;;
    jvm) record_jvm ;;
    *) echo "record-workloads: unknown workload '$w' (memcached, jvm)"; exit 2 ;;
  esac
done
ls -l "$out"
