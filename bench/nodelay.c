/*
 * A diagnostic, not part of the plugin: forces TCP_NODELAY (no Nagle) on every TCP socket of a
 * process, including the ones on which Deno's fetch turns it off (hyper-util sets
 * TCP_NODELAY=0 after connecting; Deno 2.9 has no option to change that). With it, a run shows
 * how much of its time is Nagle's algorithm waiting for a delayed ACK (~40 ms on Linux) after a
 * TLS handshake or between the parts of an answer. BENCHMARKS.md has the numbers.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/nodelay.so bench/nodelay.c -ldl
 *   LD_PRELOAD=/tmp/nodelay.so deno task bench   # the emulator and every child process
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static const int one = 1;

/* TCP over IPv4/IPv6 only: the same calls on Unix sockets would fail harmlessly, but why try. */
static void nodelay(int fd) {
  struct sockaddr_storage address;
  socklen_t length = sizeof address;
  if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return;
  if (address.ss_family != AF_INET && address.ss_family != AF_INET6) return;
  int type;
  length = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_STREAM) {
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

int connect(int fd, const struct sockaddr *address, socklen_t length) {
  static int (*real)(int, const struct sockaddr *, socklen_t);
  if (!real) real = dlsym(RTLD_NEXT, "connect");
  int result = real(fd, address, length);
  nodelay(fd);
  return result;
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = dlsym(RTLD_NEXT, "accept4");
  int result = real(fd, address, length, flags);
  if (result >= 0) nodelay(result);
  return result;
}

/* Whoever turns TCP_NODELAY off (Deno's fetch does) gets it on. */
int setsockopt(int fd, int level, int name, const void *value, socklen_t length) {
  static int (*real)(int, int, int, const void *, socklen_t);
  if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
  if (level == IPPROTO_TCP && name == TCP_NODELAY) return real(fd, level, name, &one, sizeof one);
  return real(fd, level, name, value, length);
}
