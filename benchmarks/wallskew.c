/* A wall clock that lies, for the processes it is preloaded into; the monotonic clock is left alone.

   LD_PRELOAD=wallskew.so WALLSKEW_T0_NS=<CLOCK_MONOTONIC ns> WALLSKEW_RATE=0.005 \
   WALLSKEW_STEP_AT_S=12 WALLSKEW_STEP_S=5 python ...

   CLOCK_REALTIME (and gettimeofday, time) then read
       real + (monotonic - t0) * rate + (monotonic - t0 >= step_at ? step : 0)
   so every process given the same t0 sees the same lying clock, as all processes on one machine
   see its one wall clock. Debian's libfaketime cannot do this: told to leave the monotonic clock
   alone it makes time.sleep fail with EINVAL. Built by benchmarks/wallskew.py.

   librdkafka is told the truth: it computes its condition-variable deadlines from gettimeofday
   and the kernel waits for them on its own, real, clock, so a lie there would stretch every
   internal wait of every client by the skew (seconds, after a step), which no real change of the
   clock does (a real step moves the kernel's clock too). Its calls are told apart by the
   library their return address lies in. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static long long t0_ns, step_at_ns, step_ns;
static double rate;

static long long env_ll(const char *name, double scale) {
    const char *v = getenv(name);
    return v ? (long long)(atof(v) * scale) : 0;
}

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    t0_ns = env_ll("WALLSKEW_T0_NS", 1.0);
    step_at_ns = env_ll("WALLSKEW_STEP_AT_S", 1e9);
    step_ns = env_ll("WALLSKEW_STEP_S", 1e9);
    const char *r = getenv("WALLSKEW_RATE");
    rate = r ? atof(r) : 0.0;
}

static long long skew_ns(void) {
    struct timespec m;
    real_clock_gettime(CLOCK_MONOTONIC, &m);
    long long since = (long long)m.tv_sec * 1000000000LL + m.tv_nsec - t0_ns;
    if (since < 0) return 0;
    return (long long)(since * rate) + (since >= step_at_ns ? step_ns : 0);
}

/* Whether code at this address belongs to librdkafka; a small cache keeps dladdr off most calls. */
#define CACHE 256
static uintptr_t cached_at[CACHE];
static char cached_truth[CACHE];

static int told_the_truth(void *caller) {
    uintptr_t at = (uintptr_t)caller;
    unsigned slot = (unsigned)((at >> 4) % CACHE);
    if (cached_at[slot] == at) return cached_truth[slot];
    Dl_info info;
    int truth = dladdr(caller, &info) && info.dli_fname && strstr(info.dli_fname, "librdkafka");
    cached_at[slot] = at;
    cached_truth[slot] = (char)truth;
    return truth;
}

static int lie(clockid_t clk, struct timespec *ts, void *caller) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_clock_gettime(clk, ts);
    if (rc != 0 || (clk != CLOCK_REALTIME && clk != CLOCK_REALTIME_COARSE) || told_the_truth(caller)) return rc;
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + skew_ns();
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
    return 0;
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    return lie(clk, ts, __builtin_return_address(0));
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    lie(CLOCK_REALTIME, &ts, __builtin_return_address(0));
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    (void)tz;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    lie(CLOCK_REALTIME, &ts, __builtin_return_address(0));
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
