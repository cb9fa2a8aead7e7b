/*
 * common.c: errors, clocks, small-file reading and allocation that cannot fail.
 *
 * Nothing here touches the loop; everything is safe to call from any module.
 */
#include "himari/common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int hm_err_set(hm_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

int64_t hm_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t hm_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Days since 1970-01-01 to civil date (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t yy = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

static void put_digits(char *p, unsigned v, int n) {
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void hm_format_iso8601_ms(int64_t ms, char out[25]) {
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000; /* 0 .. 86399999 */
    int y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 0) y = 0;
    if (y > 9999) y = 9999;
    unsigned r = (unsigned)rem;
    put_digits(out, (unsigned)y, 4);
    out[4] = '-';
    put_digits(out + 5, mo, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, r / 3600000, 2);
    out[13] = ':';
    put_digits(out + 14, r / 60000 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, r / 1000 % 60, 2);
    out[19] = '.';
    put_digits(out + 20, r % 1000, 3);
    out[23] = 'Z';
    out[24] = '\0';
}

int hm_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, hm_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return hm_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return hm_err_set(err, -e, "%s: cannot stat: %s", path, strerror(e));
    }
    if ((size_t)st.st_size > max_bytes) {
        close(fd);
        return hm_err_set(err, -EFBIG, "%s: %lld bytes exceeds the limit of %zu", path,
                          (long long)st.st_size, max_bytes);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return hm_err_set(err, -ENOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (out_len) *out_len = got;
    return 0;
}

bool hm_addr_is_loopback(const char *host) {
    if (!host || !*host || strcmp(host, "localhost") == 0) return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

void hm_panic(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("himari: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *hm_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) hm_panic("out of memory allocating %zu bytes", n);
    return p;
}

void *hm_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) hm_panic("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *hm_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) hm_panic("out of memory reallocating %zu bytes", n);
    return q;
}

char *hm_xstrdup(const char *s) {
    return hm_xstrndup(s, strlen(s));
}

char *hm_xstrndup(const char *s, size_t n) {
    char *p = hm_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
