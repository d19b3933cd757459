/* weft_chan_fd: the level-triggered readiness descriptor of a channel. Readable exactly while a receive
 * would not block (an element buffered, or closed), checked with poll() and epoll (EPOLLIN, level) across
 * an empty ring, a full ring, wrap-around, close with blocked waiters, close then drain, select, timer
 * channels, a descriptor attached to a channel that already holds elements, bad input, and destroy. The
 * many-thread stress is in test_chan_fd_stress.c. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "weft_test.h"

/* poll() with a zero timeout: is the descriptor readable now? */
static bool readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  int n = poll(&p, 1, 0);
  cr_assert_geq(n, 0);
  return n == 1 && (p.revents & POLLIN);
}

/* Waits up to 10 s (a wide window: only a missing wake-up reaches it). */
static bool becomes_readable(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 10000) == 1 && (p.revents & POLLIN);
}

WEFT_TEST(chan_fd, bad_input) {
  cr_assert_eq(weft_chan_fd(NULL), WEFT_EINVAL);
  weft_chan *r;
  cr_assert_eq(weft_chan_create(sizeof(int), 0, &r), 0);
  cr_assert_eq(weft_chan_fd(r), WEFT_EINVAL, "a rendezvous channel has no buffer to be readable for");
  cr_assert_eq(weft_chan_destroy(r), 0);
}

WEFT_TEST(chan_fd, same_descriptor_every_call) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 4, &ch), 0);
  int fd = weft_chan_fd(ch);
  cr_assert_geq(fd, 0);
  cr_assert_eq(weft_chan_fd(ch), fd);
  cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "close-on-exec");
  weft_chan_destroy(ch);
}

WEFT_TEST(chan_fd, empty_one_element_full_ring) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 4, &ch), 0);
  int fd = weft_chan_fd(ch);
  cr_assert(!readable(fd), "empty: not readable");
  int v = 1, out;
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert(readable(fd));
  cr_assert(readable(fd), "level-triggered: still readable until received");
  cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
  cr_assert(!readable(fd), "drained: not readable");
  for (v = 0; v < 4; v++) cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), WEFT_EFULL);
  cr_assert(readable(fd), "full");
  for (int i = 0; i < 4; i++) {
    cr_assert(readable(fd), "element %d left", 4 - i);
    cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
    cr_assert_eq(out, i);
  }
  cr_assert(!readable(fd));
  cr_assert_eq(weft_chan_try_recv(ch, &out), WEFT_EEMPTY);
  weft_chan_destroy(ch);
}

/* A capacity that is not a power of two, many wrap-arounds, readiness checked after every operation. */
WEFT_TEST(chan_fd, wraparound_tracks_every_step) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 3, &ch), 0);
  int fd = weft_chan_fd(ch);
  size_t len = 0;
  unsigned seed = 7;
  int next_in = 0, next_out = 0;
  for (int i = 0; i < 5000; i++) {
    if (weft_test_rand(&seed) % 2) {
      int rc = weft_chan_try_send(ch, &next_in);
      if (len < 3) {
        cr_assert_eq(rc, 0);
        len++, next_in++;
      } else {
        cr_assert_eq(rc, WEFT_EFULL);
      }
    } else {
      int out;
      int rc = weft_chan_try_recv(ch, &out);
      if (len > 0) {
        cr_assert_eq(rc, 0);
        cr_assert_eq(out, next_out++);
        len--;
      } else {
        cr_assert_eq(rc, WEFT_EEMPTY);
      }
    }
    cr_assert_eq(readable(fd), len > 0, "step %d, %zu buffered", i, len);
  }
  weft_chan_destroy(ch);
}

WEFT_TEST(chan_fd, attached_to_a_channel_with_elements) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 8, &ch), 0);
  int v = 5, out;
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  int fd = weft_chan_fd(ch);
  cr_assert(readable(fd), "elements buffered before the first call");
  cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
  cr_assert(readable(fd));
  cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
  cr_assert(!readable(fd));
  weft_chan_destroy(ch);
}

WEFT_TEST(chan_fd, close_then_drain_stays_readable) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 4, &ch), 0);
  int fd = weft_chan_fd(ch);
  int v = 1, out;
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_close(ch), 0);
  cr_assert(readable(fd));
  cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
  cr_assert(readable(fd));
  cr_assert_eq(weft_chan_try_recv(ch, &out), 0);
  cr_assert(readable(fd), "closed and drained: a receive returns at once, so readable");
  cr_assert_eq(weft_chan_try_recv(ch, &out), WEFT_ECLOSED);
  cr_assert(readable(fd));
  weft_chan_destroy(ch);
}

WEFT_TEST(chan_fd, close_of_an_empty_channel) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 4, &ch), 0);
  int fd = weft_chan_fd(ch);
  cr_assert(!readable(fd));
  cr_assert_eq(weft_chan_close(ch), 0);
  cr_assert(readable(fd));
  weft_chan_destroy(ch);
}

/* Close while a receiver is blocked on the empty channel and a sender on a full one: both wake, and the
 * descriptors turn readable. */
static void *blocked_recv(void *a) {
  int out;
  return (void *)(intptr_t)weft_chan_recv(a, NULL, &out);
}
static void *blocked_send(void *a) {
  int v = 9;
  return (void *)(intptr_t)weft_chan_send(a, NULL, &v);
}

WEFT_TEST(chan_fd, close_with_waiters) {
  weft_chan *e, *f;
  cr_assert_eq(weft_chan_create(sizeof(int), 2, &e), 0);
  cr_assert_eq(weft_chan_create(sizeof(int), 1, &f), 0);
  int efd = weft_chan_fd(e), ffd = weft_chan_fd(f);
  int v = 1;
  cr_assert_eq(weft_chan_try_send(f, &v), 0);
  pthread_t r, s;
  pthread_create(&r, NULL, blocked_recv, e);
  pthread_create(&s, NULL, blocked_send, f);
  struct weft_chan_stats st;
  do { /* until both are queued as waiters */
    usleep(1000);
    weft_chan_stats(e, &st);
    uint64_t rw = st.recv_waits;
    weft_chan_stats(f, &st);
    if (rw > 0 && st.send_waits > 0) break;
  } while (1);
  cr_assert(!readable(efd));
  cr_assert(readable(ffd));
  cr_assert_eq(weft_chan_close(e), 0);
  cr_assert_eq(weft_chan_close(f), 0);
  void *rr, *sr;
  pthread_join(r, &rr);
  pthread_join(s, &sr);
  cr_assert_eq((int)(intptr_t)rr, WEFT_ECLOSED);
  cr_assert_eq((int)(intptr_t)sr, WEFT_ECLOSED);
  cr_assert(readable(efd));
  cr_assert(readable(ffd));
  int out;
  cr_assert_eq(weft_chan_try_recv(f, &out), 0);
  cr_assert_eq(out, 1, "the element sent before close is still there, the blocked one was not sent");
  cr_assert(readable(ffd));
  weft_chan_destroy(e);
  weft_chan_destroy(f);
}

/* A blocked receiver and the descriptor at once: the receiver takes the element (a wake-up through the
 * wait queue), and the descriptor ends not readable. */
WEFT_TEST(chan_fd, blocked_receiver_and_descriptor_together) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 2, &ch), 0);
  int fd = weft_chan_fd(ch);
  pthread_t r;
  pthread_create(&r, NULL, blocked_recv, ch);
  struct weft_chan_stats st;
  do {
    usleep(1000);
    weft_chan_stats(ch, &st);
  } while (st.recv_waits == 0);
  int v = 3;
  cr_assert_eq(weft_chan_send(ch, NULL, &v), 0);
  void *rr;
  pthread_join(r, &rr);
  cr_assert_eq((int)(intptr_t)rr, 0);
  cr_assert(!readable(fd), "the receiver took it");
  weft_chan_destroy(ch);
}

WEFT_TEST(chan_fd, select_send_and_recv_cases) {
  weft_chan *a, *b;
  cr_assert_eq(weft_chan_create(sizeof(int), 2, &a), 0);
  cr_assert_eq(weft_chan_create(sizeof(int), 2, &b), 0);
  int afd = weft_chan_fd(a), bfd = weft_chan_fd(b);
  int v = 4, out = 0;
  weft_select_case sc[] = {WEFT_SEND_CASE(a, &v)};
  cr_assert_eq(weft_select(NULL, sc, 1), 0);
  cr_assert(readable(afd));
  cr_assert(!readable(bfd));
  weft_select_case rc[] = {WEFT_RECV_CASE(b, &out), WEFT_RECV_CASE(a, &out)};
  cr_assert_eq(weft_select(NULL, rc, 2), 1);
  cr_assert_eq(out, 4);
  cr_assert(!readable(afd));
  cr_assert_eq(weft_try_select(rc, 2), WEFT_EEMPTY);
  cr_assert(!readable(afd) && !readable(bfd));
  weft_chan_destroy(a);
  weft_chan_destroy(b);
}

WEFT_TEST(chan_fd, timer_channel_turns_readable) {
  weft_chan *t;
  cr_assert_eq(weft_chan_after(WEFT_MS(5), &t), 0);
  int fd = weft_chan_fd(t);
  cr_assert_geq(fd, 0);
  cr_assert(becomes_readable(fd));
  int64_t when;
  cr_assert_eq(weft_chan_try_recv(t, &when), 0);
  cr_assert(!readable(fd));
  weft_chan_destroy(t);
}

/* epoll, level-triggered (the default): every epoll_wait reports the descriptor until the channel is
 * drained; an edge-triggered registration reports once per transition. */
WEFT_TEST(chan_fd, epoll_level_and_edge) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 8, &ch), 0);
  int fd = weft_chan_fd(ch);
  int lt = epoll_create1(EPOLL_CLOEXEC), et = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1};
  cr_assert_eq(epoll_ctl(lt, EPOLL_CTL_ADD, fd, &ev), 0);
  ev.events = EPOLLIN | EPOLLET;
  cr_assert_eq(epoll_ctl(et, EPOLL_CTL_ADD, fd, &ev), 0);
  struct epoll_event out[2];
  cr_assert_eq(epoll_wait(lt, out, 2, 0), 0);
  cr_assert_eq(epoll_wait(et, out, 2, 0), 0);
  int v = 1, x;
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(weft_chan_try_send(ch, &v), 0); /* a second element: no new edge (already readable) */
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(epoll_wait(lt, out, 2, 0), 1, "level: reported again (%d)", i);
    cr_assert(out[0].events & EPOLLIN);
  }
  cr_assert_eq(epoll_wait(et, out, 2, 0), 1);
  cr_assert_eq(epoll_wait(et, out, 2, 0), 0, "edge: once");
  cr_assert_eq(weft_chan_try_recv(ch, &x), 0);
  cr_assert_eq(epoll_wait(lt, out, 2, 0), 1, "one element left");
  cr_assert_eq(weft_chan_try_recv(ch, &x), 0);
  cr_assert_eq(epoll_wait(lt, out, 2, 0), 0, "drained: no longer reported");
  cr_assert_eq(weft_chan_try_send(ch, &v), 0);
  cr_assert_eq(epoll_wait(et, out, 2, 0), 1, "edge: a new element after a drain is a new edge");
  cr_assert_eq(epoll_ctl(lt, EPOLL_CTL_DEL, fd, NULL), 0);
  cr_assert_eq(epoll_ctl(et, EPOLL_CTL_DEL, fd, NULL), 0);
  close(lt);
  close(et);
  weft_chan_destroy(ch);
}

/* weft_chan_destroy closes the descriptor. Checked at once, before this test opens anything (the number
 * may be reused by the next open, so the test never touches it afterwards). */
WEFT_TEST(chan_fd, destroy_closes_the_descriptor) {
  weft_chan *ch;
  cr_assert_eq(weft_chan_create(sizeof(int), 2, &ch), 0);
  int fd = weft_chan_fd(ch);
  cr_assert_geq(fcntl(fd, F_GETFD), 0);
  cr_assert_eq(weft_chan_destroy(ch), 0);
  errno = 0;
  cr_assert_eq(fcntl(fd, F_GETFD), -1);
  cr_assert_eq(errno, EBADF);
}

/* A channel never asked for a descriptor has none (nothing opened): creating and using channels does not
 * consume descriptors. */
WEFT_TEST(chan_fd, channels_that_never_ask_open_nothing) {
  int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
  cr_assert_geq(probe, 0);
  close(probe);
  weft_chan *ch[16];
  for (int i = 0; i < 16; i++) {
    cr_assert_eq(weft_chan_create(sizeof(int), 4, &ch[i]), 0);
    int v = i, out;
    cr_assert_eq(weft_chan_try_send(ch[i], &v), 0);
    cr_assert_eq(weft_chan_try_recv(ch[i], &out), 0);
  }
  int again = open("/dev/null", O_RDONLY | O_CLOEXEC);
  cr_assert_eq(again, probe, "the lowest free descriptor is still the same one");
  close(again);
  for (int i = 0; i < 16; i++) weft_chan_destroy(ch[i]);
}
