/* The guest's program for bench/qemu: fills WORK MiB with bytes that do not
 * compress to zero pages, then writes one word into a random page of the
 * first HOT MiB at RATE pages per second, and prints a heartbeat each second
 * (the destination's serial log shows the guest still runs after a
 * migration). Usage: writer WORK_MIB HOT_MIB RATE */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: writer WORK_MIB HOT_MIB RATE\n");
    return 2;
  }
  size_t work = strtoul(argv[1], 0, 10) << 20, hot = strtoul(argv[2], 0, 10) << 20;
  long rate = strtol(argv[3], 0, 10);
  if (hot == 0 || hot > work || rate < 0) {
    fprintf(stderr, "writer: need 0 < HOT <= WORK and RATE >= 0\n");
    return 2;
  }
  uint64_t *mem = malloc(work);
  if (!mem) return 1;
  for (size_t k = 0; k < work / 8; k++) mem[k] = next();
  size_t hotPages = hot / 4096;
  /* 100 ticks a second, each writing its share of the rate. */
  struct timespec tick = {0, 10 * 1000 * 1000};
  long written = 0;
  for (unsigned long t = 0;; t++) {
    long due = rate * (long)(t + 1) / 100 - rate * (long)t / 100;
    for (long k = 0; k < due; k++) {
      size_t page = next() % hotPages;
      mem[page * 512 + next() % 512] = next();
    }
    written += due;
    if (t % 100 == 0) printf("writer: %lu s, %ld pages written\n", t / 100, written), fflush(stdout);
    nanosleep(&tick, 0);
  }
}
