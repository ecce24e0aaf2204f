/*
 * linkemu: the network lab's link emulator (the kernel here has no sch_netem). It bridges two
 * interfaces with AF_PACKET raw sockets and, per direction, delays, drops at random, limits the
 * rate of, or drops every frame, as told by lines on stdin. Compiled at test time by Netlab.ts.
 * A delayed frame leaves within a twentieth of the delay (at most 250 us) of its time: the pump
 * works in ticks while frames wait, so it costs little CPU beside the processes under test.
 *
 *   linkemu offload-off IF...   turn checksum/segmentation offloads off (needed by a raw bridge)
 *   linkemu run IF_A IF_B       bridge; prints "ready", then answers each stdin line:
 *     set ab|ba|both [delay=MS] [loss=P] [rate=BYTES_PER_S] [limit=BYTES] [down=0|1]   -> ok
 *     down | up (both directions)  -> ok        stats -> "stats ab k=v... | ba k=v..."
 *     quit, or EOF on stdin -> exit
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SLOT 2048   /* > 1514: a bigger frame means offloads were left on */
#define BATCH 64

struct slot {
  uint64_t due;
  uint32_t len;
  unsigned char data[SLOT];
};

struct dir {
  const char *name;
  int in_fd, out_fd;
  pthread_mutex_t lock; /* guards the parameters below */
  double delay_ns, loss, rate;
  uint64_t limit;
  int down;
  uint64_t rng;
  struct slot *ring;
  size_t cap, head, count;
  uint64_t tx_free; /* when the emulated wire is free again (rate limiting), ns */
  /* counters, read by the control thread without locking (approximate is fine) */
  volatile uint64_t rx, tx, lost, dropped_down, dropped_queue, oversize, send_errors;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double uniform(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static int open_packet(const char *ifname, int proto) {
  int fd = socket(AF_PACKET, SOCK_RAW, htons(proto));
  if (fd < 0) return -1;
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(proto);
  sll.sll_ifindex = (int)if_nametoindex(ifname);
  if (sll.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) return -1;
  int big = 16 << 20, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
#ifdef PACKET_IGNORE_OUTGOING
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
#endif
  (void)one;
  return fd;
}

/*
 * How late a delayed frame may be taken in or sent: a twentieth of the delay, at most 250 us. While
 * frames wait, the pump wakes once per tick, takes in every frame that arrived and sends every
 * frame due by the next tick with one sendmmsg, instead of waking for each frame (at 50 ms and
 * ~20k frames/s that cost the emulator half a core, taken from the processes under test). Without
 * delay, and while nothing waits, it wakes for each arrival as before.
 */
static uint64_t tick_of(double delay_ns) {
  if (delay_ns <= 0) return 0;
  double t = delay_ns / 20;
  return t > 250000 ? 250000 : (uint64_t)t;
}

/* Sends (or, while down, discards) every queued frame due by `by`, in batches of BATCH. */
static void send_due(struct dir *d, uint64_t by) {
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  while (d->count > 0 && d->ring[d->head].due <= by) {
    if (__atomic_load_n(&d->down, __ATOMIC_RELAXED)) {
      d->dropped_down++;
      d->head = (d->head + 1) % d->cap;
      d->count--;
      continue;
    }
    int n = 0;
    for (size_t k = d->head; n < BATCH && n < (int)d->count; k = (k + 1) % d->cap, n++) {
      if (d->ring[k].due > by) break;
      iov[n].iov_base = d->ring[k].data;
      iov[n].iov_len = d->ring[k].len;
      memset(&msgs[n].msg_hdr, 0, sizeof msgs[n].msg_hdr);
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
    }
    int sent = 0;
    while (sent < n) {
      int r = sendmmsg(d->out_fd, msgs + sent, (unsigned)(n - sent), 0);
      if (r > 0) { sent += r; continue; }
      if (errno == ENOBUFS || errno == EAGAIN) { struct timespec t = {0, 50000}; nanosleep(&t, NULL); continue; }
      d->send_errors++; /* this frame is lost; go on with the next */
      sent++;
    }
    d->tx += (uint64_t)n;
    d->head = (d->head + (size_t)n) % d->cap;
    d->count -= (size_t)n;
  }
}

static void *pump(void *arg) {
  struct dir *d = arg;
  unsigned char (*buf)[SLOT] = malloc(BATCH * SLOT);
  if (buf == NULL) return NULL;
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (;;) {
    pthread_mutex_lock(&d->lock);
    uint64_t tick = tick_of(d->delay_ns);
    pthread_mutex_unlock(&d->lock);
    uint64_t now = now_ns();
    send_due(d, now + tick);
    struct timespec timeout = {0, 100000000};
    if (d->count > 0) {
      uint64_t due = d->ring[d->head].due;
      uint64_t wait = due > now ? due - now : 0;
      if (wait < tick) wait = tick;
      timeout.tv_sec = (time_t)(wait / 1000000000ull);
      timeout.tv_nsec = (long)(wait % 1000000000ull);
    }
    if (tick > 0 && d->count > 0) {
      /* frames are waiting: sleep a tick (or until the first is due), then take in all that came */
      if (timeout.tv_sec > 0 || timeout.tv_nsec > (long)tick) { timeout.tv_sec = 0; timeout.tv_nsec = (long)tick; }
      nanosleep(&timeout, NULL);
    } else {
      struct pollfd p = {.fd = d->in_fd, .events = POLLIN};
      if (ppoll(&p, 1, &timeout, NULL) <= 0) continue;
    }
    for (;;) {
      for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buf[i];
        iov[i].iov_len = SLOT;
        memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = recvmmsg(d->in_fd, msgs, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
      if (n <= 0) break;
      now = now_ns();
      pthread_mutex_lock(&d->lock);
      double delay = d->delay_ns, loss = d->loss, rate = d->rate;
      uint64_t limit = d->limit;
      int down = d->down;
      pthread_mutex_unlock(&d->lock);
      for (int i = 0; i < n; i++) {
        uint32_t len = msgs[i].msg_len;
        d->rx++;
        if (len > SLOT) {
          if (d->oversize++ == 0) fprintf(stderr, "linkemu: %s: %u-byte frame (offloads on?)\n", d->name, len);
          continue;
        }
        if (down) { d->dropped_down++; continue; }
        if (loss > 0 && uniform(&d->rng) < loss) { d->lost++; continue; }
        if (d->count == d->cap) { d->dropped_queue++; continue; }
        uint64_t leave = now;
        if (rate > 0) {
          if (d->tx_free < now) d->tx_free = now;
          if ((double)(d->tx_free - now) * rate / 1e9 > (double)limit) { d->dropped_queue++; continue; }
          d->tx_free += (uint64_t)((double)len * 1e9 / rate);
          leave = d->tx_free;
        }
        struct slot *s = &d->ring[(d->head + d->count) % d->cap];
        s->due = leave + (uint64_t)delay;
        s->len = len;
        memcpy(s->data, buf[i], len);
        d->count++;
      }
      if (n < BATCH) break;
    }
  }
  return NULL;
}

static int set_params(struct dir *d, char *args) {
  pthread_mutex_lock(&d->lock);
  int ok = 1;
  for (char *tok = strtok(args, " \t\n"); tok != NULL; tok = strtok(NULL, " \t\n")) {
    char *eq = strchr(tok, '=');
    if (eq == NULL) { ok = 0; break; }
    *eq = 0;
    double v = strtod(eq + 1, NULL);
    if (strcmp(tok, "delay") == 0) d->delay_ns = v * 1e6;
    else if (strcmp(tok, "loss") == 0) d->loss = v;
    else if (strcmp(tok, "rate") == 0) d->rate = v;
    else if (strcmp(tok, "limit") == 0) d->limit = (uint64_t)v;
    else if (strcmp(tok, "down") == 0) __atomic_store_n(&d->down, v != 0, __ATOMIC_RELAXED);
    else if (strcmp(tok, "seed") == 0) d->rng = (uint64_t)v | 1;
    else { ok = 0; break; }
    *eq = '=';
  }
  pthread_mutex_unlock(&d->lock);
  return ok;
}

static void print_stats(struct dir *d) {
  printf("%s rx=%llu tx=%llu lost=%llu down=%llu overflow=%llu oversize=%llu senderr=%llu queued=%zu", d->name,
         (unsigned long long)d->rx, (unsigned long long)d->tx, (unsigned long long)d->lost,
         (unsigned long long)d->dropped_down, (unsigned long long)d->dropped_queue, (unsigned long long)d->oversize,
         (unsigned long long)d->send_errors, d->count);
}

static int offload_off(const char *ifname) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return 1;
  const uint32_t cmds[] = {ETHTOOL_SGRO, ETHTOOL_SGSO, ETHTOOL_STSO, ETHTOOL_SSG, ETHTOOL_STXCSUM, ETHTOOL_SRXCSUM};
  const uint32_t gets[] = {ETHTOOL_GGRO, ETHTOOL_GGSO, ETHTOOL_GTSO, ETHTOOL_GSG, ETHTOOL_GTXCSUM, ETHTOOL_GRXCSUM};
  int bad = 0;
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    struct ethtool_value ev = {.cmd = cmds[i], .data = 0};
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = (void *)&ev;
    ioctl(fd, SIOCETHTOOL, &ifr); /* some are refused when already implied off; checked below */
  }
  for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
    struct ethtool_value ev = {.cmd = gets[i], .data = 0};
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    ifr.ifr_data = (void *)&ev;
    if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) { fprintf(stderr, "linkemu: %s: ethtool get %u: %s\n", ifname, gets[i], strerror(errno)); bad = 1; }
    else if (ev.data != 0) { fprintf(stderr, "linkemu: %s: offload %u still on\n", ifname, gets[i]); bad = 1; }
  }
  close(fd);
  return bad;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "offload-off") == 0) {
    int bad = 0;
    for (int i = 2; i < argc; i++) bad |= offload_off(argv[i]);
    return bad;
  }
  if (argc < 4 || strcmp(argv[1], "run") != 0) {
    fprintf(stderr, "usage: linkemu offload-off IF... | linkemu run IF_A IF_B [SLOTS]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* the link is not what is measured: keep its timing faithful when the machine is busy */
  if (nice(-10) == -1 && errno != 0) errno = 0;
  size_t cap = argc >= 5 ? (size_t)strtoul(argv[4], NULL, 10) : 32768;
  int a_in = open_packet(argv[2], ETH_P_ALL), b_in = open_packet(argv[3], ETH_P_ALL);
  int a_out = open_packet(argv[2], 0), b_out = open_packet(argv[3], 0);
  if (a_in < 0 || b_in < 0 || a_out < 0 || b_out < 0) {
    fprintf(stderr, "linkemu: cannot open packet sockets on %s/%s: %s\n", argv[2], argv[3], strerror(errno));
    return 1;
  }
  static struct dir dirs[2];
  const char *names[2] = {"ab", "ba"};
  int ins[2] = {a_in, b_in}, outs[2] = {b_out, a_out};
  for (int i = 0; i < 2; i++) {
    dirs[i].name = names[i];
    dirs[i].in_fd = ins[i];
    dirs[i].out_fd = outs[i];
    pthread_mutex_init(&dirs[i].lock, NULL);
    dirs[i].limit = 1ull << 62;
    dirs[i].rng = (now_ns() ^ ((uint64_t)getpid() << 20) ^ (uint64_t)i) | 1;
    dirs[i].cap = cap;
    dirs[i].ring = calloc(cap, sizeof(struct slot));
    if (dirs[i].ring == NULL) { fprintf(stderr, "linkemu: out of memory\n"); return 1; }
  }
  pthread_t threads[2];
  for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, pump, &dirs[i]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready\n");
  char line[1024];
  while (fgets(line, sizeof line, stdin) != NULL) {
    char verb[16] = {0}, which[16] = {0};
    int consumed = 0;
    if (sscanf(line, "%15s%n", verb, &consumed) != 1) continue;
    if (strcmp(verb, "quit") == 0) break;
    if (strcmp(verb, "down") == 0 || strcmp(verb, "up") == 0) {
      char arg[16];
      snprintf(arg, sizeof arg, "down=%d", verb[0] == 'd');
      char copy[16];
      for (int i = 0; i < 2; i++) { strcpy(copy, arg); set_params(&dirs[i], copy); }
      printf("ok\n");
    } else if (strcmp(verb, "stats") == 0) {
      printf("stats ");
      print_stats(&dirs[0]);
      printf(" | ");
      print_stats(&dirs[1]);
      printf("\n");
    } else if (strcmp(verb, "set") == 0) {
      int more = 0;
      if (sscanf(line + consumed, "%15s%n", which, &more) != 1) { printf("err set needs ab|ba|both\n"); continue; }
      char *rest = line + consumed + more;
      int ok = 1;
      for (int i = 0; i < 2; i++) {
        if (strcmp(which, "both") != 0 && strcmp(which, names[i]) != 0) continue;
        char copy[1024];
        strncpy(copy, rest, sizeof copy - 1);
        copy[sizeof copy - 1] = 0;
        ok &= set_params(&dirs[i], copy);
      }
      if (strcmp(which, "both") != 0 && strcmp(which, "ab") != 0 && strcmp(which, "ba") != 0) ok = 0;
      if (ok) printf("ok\n");
      else printf("err bad set: %s%s", line, line[strlen(line) - 1] == '\n' ? "" : "\n");
    } else {
      printf("err unknown command: %s", line);
    }
  }
  return 0;
}
