#!/usr/bin/env bash
# Records real workloads as pagetraces for measuring what pagemill tunes
# (MECOM's class rule, the auto codec, Ada-copy's rule) on memory it was not
# tuned on. Debian: installs memcached, redis-server and postgresql when
# missing and uses the JDK if present. Writes to ${OUT:-/tmp/pagemill-traces};
# the traces are data, not part of the repo.
#   scripts/record-workloads.sh [memcached] [jvm] [redis-hash] [memcached-get] [pgbench] [redis-mixed]
#   (default: memcached jvm)
# Needs `npm run build` first; runs as root or with ptrace rights over its children.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/pagemill-traces}"
mkdir -p "$out"
pagemill() { node dist/cli/bin.js "$@"; }
want=("${@:-memcached jvm}")

# need COMMAND PACKAGE: installs the Debian package when the command is missing.
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }

# record_then_stop PID NAME [PIDS...]: records PID for 10 s every 250 ms as NAME, then stops the PIDS.
record_then_stop() {
  local pid=$1 name=$2
  shift 2
  pagemill record --pid "$pid" --interval 250ms --duration 10s -o "$out/$name.ptrace.gz"
  kill "$@" 2>/dev/null || true
  wait 2>/dev/null || true
}

# record_memcached NAME MEGABYTES PORT LOAD: memcached of that size under one of two loads.
#   set-skewed: a set-heavy cache, keys with a skewed popularity, values of mixed
#     sizes and content (text, numbers, random bytes as hex);
#   get-uniform: a read-mostly cache, 90% gets, uniform keys, 2 KiB values.
record_memcached() {
  local name=$1 megabytes=$2 port=$3 load=$4
  need memcached memcached
  memcached -u root -m "$megabytes" -p "$port" -U 0 -l 127.0.0.1 &
  local server=$!
  sleep 1
  python3 - "$port" "$load" <<'PY' &
import random, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
if sys.argv[2] == "set-skewed":
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
else:
    f = s.makefile("rb")
    r = random.Random(13)
    put = lambda k: s.sendall(b"set g%d 0 0 2048 noreply\r\n%s\r\n" % (k, r.randbytes(1024).hex().encode()))
    for k in range(30000): put(k)
    end = time.time() + 18
    while time.time() < end:
        k = r.randrange(30000)
        if r.random() >= 0.9: put(k)
        else:
            s.sendall(b"get g%d\r\n" % k)
            while f.readline() not in (b"END\r\n", b""): pass
PY
  local driver=$!
  sleep 4
  record_then_stop "$server" "$name" "$driver" "$server"
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

# redis under hashes and counters with 1 KiB values (the shared redis trace is SET of 256 B and a list).
record_redis_hash() {
  need redis-server redis-server
  redis-server --port 6391 --save '' --appendonly no --daemonize no >/dev/null &
  local server=$!
  sleep 1
  redis-benchmark -p 6391 -t hset -d 1024 -r 40000 -n 200000 -q >/dev/null
  redis-benchmark -p 6391 -t hset,incr,set -d 1024 -r 40000 -c 16 -n 100000000 -q >/dev/null &
  local load=$!
  sleep 3
  record_then_stop "$server" redis-hash "$load" "$server"
}

# redis under sorted sets, lists, sets and a stream of small values (skip lists, listpacks and stream
# nodes where redis-hash has hashes of 1 KiB values): a held-out trace for issue 12, session 8.
record_redis_mixed() {
  need redis-server redis-server
  redis-server --port 6392 --save '' --appendonly no --daemonize no >/dev/null &
  local server=$!
  sleep 1
  redis-benchmark -p 6392 -t zadd,lpush,sadd -d 64 -r 100000 -n 200000 -q >/dev/null
  redis-benchmark -p 6392 -t zadd,lpush,rpop,sadd,spop,xadd -d 64 -r 100000 -c 8 -n 100000000 -q >/dev/null &
  local load=$!
  sleep 3
  record_then_stop "$server" redis-mixed "$load" "$server"
}

# PostgreSQL 15 under pgbench's TPC-B-like load (scale 8, 4 clients): one backend and the shared buffers.
record_pgbench() {
  local bin=/usr/lib/postgresql/15/bin
  need "$bin/postgres" postgresql
  local dir
  dir=$(mktemp -d)
  chown postgres "$dir"
  su postgres -c "$bin/initdb -D $dir/data -A trust" >/dev/null
  su postgres -c "$bin/pg_ctl -D $dir/data -o '-p 5499 -c shared_buffers=64MB -k $dir' -l $dir/log start -w" >/dev/null
  su postgres -c "$bin/pgbench -h $dir -p 5499 -i -s 8 postgres" >/dev/null 2>&1
  su postgres -c "$bin/pgbench -h $dir -p 5499 -c 4 -T 20 postgres" >/dev/null 2>&1 &
  local load=$!
  sleep 3
  local backend
  backend=$(pgrep -u postgres -f 'postgres: postgres postgres' | head -1)
  record_then_stop "$backend" pgbench-tpcb "$load"
  su postgres -c "$bin/pg_ctl -D $dir/data stop -m fast" >/dev/null
  rm -rf "$dir"
}

for w in ${want[@]}; do
  case "$w" in
    memcached) record_memcached memcached 256 21211 set-skewed ;;
    jvm) record_jvm ;;
    redis-hash) record_redis_hash ;;
    memcached-get) record_memcached memcached-get 128 21212 get-uniform ;;
    pgbench) record_pgbench ;;
    redis-mixed) record_redis_mixed ;;
    *) echo "record-workloads: unknown workload '$w' (memcached, jvm, redis-hash, memcached-get, pgbench, redis-mixed)"; exit 2 ;;
  esac
done
ls -l "$out"
