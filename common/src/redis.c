/*
 * redis.c: a self-reconnecting Redis connection on the loop (himari/redis.h).
 *
 * hiredis owns the socket (its libuv adapter polls it); this file owns the life cycle
 * around it. One uv_timer serves three deadlines, whichever applies in the state: the
 * connect deadline (CONNECTING), the reply deadline (READY with commands in flight: the
 * oldest unanswered one must progress within command_timeout_ms) and the back-off before
 * the next connect (DOWN). A context we drop ourselves has its data cleared first, so
 * hiredis's disconnect callback for it is recognised and ignored: every path to DOWN goes
 * through went_down() exactly once.
 */
#include "himari/redis.h"

#include <errno.h>
#include <stddef.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "himari/log.h"

#define RC(field) offsetof(hm_redis_config, field)

const hm_cfg_key hm_redis_config_keys[] = {
    {"redis.host", HM_CFG_STR, RC(host), "127.0.0.1", 0, 0, -1, "Redis server address"},
    {"redis.port", HM_CFG_INT, RC(port), "6379", 0, 1, 65535, "Redis server port"},
    {"redis.password", HM_CFG_SECRET, RC(password), NULL, 0, 0, -1,
     "AUTH password (prefer password_file); unset: no AUTH"},
    {"redis.db", HM_CFG_INT, RC(db), "0", 0, 0, 15, "database number (SELECT)"},
    {"redis.connect_timeout_ms", HM_CFG_INT, RC(connect_timeout_ms), "2000", 0, 1, 60000,
     "a connect (TCP, AUTH, SELECT) slower than this is dropped and retried with back-off"},
    {"redis.command_timeout_ms", HM_CFG_INT, RC(command_timeout_ms), "5000", 0, 1, 600000,
     "no reply for this long with commands in flight: the connection is dropped and remade"},
};
const size_t hm_redis_config_keys_n = HM_ARRAY_LEN(hm_redis_config_keys);

hm_redis_opts hm_redis_opts_of(const hm_redis_config *c) {
    return (hm_redis_opts){.host = c->host,
                           .port = (int)c->port,
                           .password = c->password,
                           .db = c->db,
                           .connect_timeout_ms = c->connect_timeout_ms,
                           .command_timeout_ms = c->command_timeout_ms};
}

struct hm_redis {
    uv_loop_t *loop;
    char *host, *password;
    hm_redis_opts o;
    hm_redis_state_fn state_fn;
    void *ud;
    redisAsyncContext *ac; /* NULL when DOWN */
    hm_redis_state state;
    uv_timer_t timer;
    int64_t backoff_ms;
    uint64_t progress_ms; /* the last reply, or when the first pending command was sent */
    size_t pending;       /* our commands in flight (AUTH/SELECT not counted) */
    uint64_t connects;
    bool closing;
    char last_error[160];
    void (*closed)(void *);
    void *closed_ud;
};

typedef struct command {
    hm_redis *r;
    hm_redis_reply_fn fn;
    void *ud;
} command;

static void connect_now(hm_redis *r);
static void on_timer(uv_timer_t *t);

const char *hm_redis_state_name(hm_redis_state s) {
    switch (s) {
        case HM_REDIS_DOWN:
            return "down";
        case HM_REDIS_CONNECTING:
            return "connecting";
        case HM_REDIS_READY:
            return "ready";
    }
    return "unknown";
}

static void set_state(hm_redis *r, hm_redis_state s) {
    if (r->state == s) return;
    r->state = s;
    if (r->state_fn && !r->closing) r->state_fn(r, s, r->ud);
}

static void arm(hm_redis *r, int64_t ms) {
    uv_timer_start(&r->timer, on_timer, (uint64_t)(ms > 0 ? ms : 1), 0);
}

/* Every way down: note why, schedule the next connect with back-off. */
static void went_down(hm_redis *r, const char *why) {
    r->ac = NULL;
    snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    if (r->state == HM_REDIS_READY) {
        hm_log_warn("redis_down", HM_LS("host", r->host), HM_LI("port", r->o.port),
                    HM_LS("error", why));
    }
    set_state(r, HM_REDIS_DOWN);
    if (r->closing) return;
    arm(r, r->backoff_ms);
    r->backoff_ms =
        r->backoff_ms * 2 > r->o.backoff_max_ms ? r->o.backoff_max_ms : r->backoff_ms * 2;
}

/* Drop a context ourselves (a deadline passed, AUTH failed): its callbacks get NULL. */
static void drop(hm_redis *r, const char *why) {
    redisAsyncContext *ac = r->ac;
    if (!ac) return;
    ac->data = NULL; /* its disconnect callback, if any, is not ours to handle any more */
    went_down(r, why);
    redisAsyncFree(ac);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    (void)ac;
    command *c = privdata;
    hm_redis *r = c->r;
    r->pending--;
    r->progress_ms = uv_now(r->loop);
    c->fn(r, reply, c->ud);
    free(c);
}

static void on_select(redisAsyncContext *ac, void *reply, void *privdata) {
    hm_redis *r = privdata;
    const redisReply *rep = reply;
    if (!ac->data || r->ac != ac) return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        if (!r->last_error[0]) { /* a failed AUTH said why already */
            snprintf(r->last_error, sizeof(r->last_error), "SELECT %lld: %s", (long long)r->o.db,
                     rep ? rep->str : "no reply");
        }
        redisAsyncDisconnect(ac);
        return;
    }
    r->backoff_ms = r->o.backoff_min_ms;
    r->connects++;
    r->progress_ms = uv_now(r->loop);
    uv_timer_stop(&r->timer);
    hm_log_info("redis_ready", HM_LS("host", r->host), HM_LI("port", r->o.port),
                HM_LI("db", r->o.db), HM_LI("connects", (int64_t)r->connects));
    set_state(r, HM_REDIS_READY);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata) {
    hm_redis *r = privdata;
    const redisReply *rep = reply;
    if (!ac->data || r->ac != ac) return;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        snprintf(r->last_error, sizeof(r->last_error), "AUTH: %s", rep ? rep->str : "no reply");
        hm_log_limited(HM_LOG_ERROR, "redis_auth_failed", 5, HM_LS("error", r->last_error));
        redisAsyncDisconnect(ac);
    }
}

static void on_connect(const redisAsyncContext *ac, int status) {
    hm_redis *r = ac->data;
    if (!r || r->ac != ac) return;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", ac->errstr);
        went_down(r, why); /* hiredis frees a context whose connect failed */
        return;
    }
    redisAsyncContext *c = (redisAsyncContext *)ac;
    if (r->password && *r->password) {
        const char *argv[] = {"AUTH", r->password};
        size_t lens[] = {4, strlen(r->password)};
        redisAsyncCommandArgv(c, on_auth, r, 2, argv, lens);
    }
    char db[24];
    int n = snprintf(db, sizeof(db), "%lld", (long long)r->o.db);
    const char *argv[] = {"SELECT", db};
    size_t lens[] = {6, (size_t)n};
    redisAsyncCommandArgv(c, on_select, r, 2, argv, lens);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    hm_redis *r = ac->data;
    if (!r || r->ac != ac) return;
    const char *why = status == REDIS_OK ? (r->last_error[0] ? r->last_error : "closed")
                                         : (ac->errstr[0] ? ac->errstr : "connection lost");
    char copy[160];
    snprintf(copy, sizeof(copy), "%s", why);
    went_down(r, copy);
}

static void connect_now(hm_redis *r) {
    r->last_error[0] = '\0';
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->o.port);
    if (!ac) {
        went_down(r, "connect: out of memory");
        return;
    }
    if (ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", ac->errstr);
        redisAsyncFree(ac);
        went_down(r, why);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        went_down(r, "connect: cannot attach to the loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    set_state(r, HM_REDIS_CONNECTING);
    arm(r, r->o.connect_timeout_ms);
}

static void on_timer(uv_timer_t *t) {
    hm_redis *r = t->data;
    switch (r->state) {
        case HM_REDIS_DOWN:
            if (!r->closing) connect_now(r);
            return;
        case HM_REDIS_CONNECTING:
            drop(r, "connect: timed out");
            return;
        case HM_REDIS_READY:
            if (r->pending == 0) return;
            if (uv_now(r->loop) - r->progress_ms >= (uint64_t)r->o.command_timeout_ms) {
                drop(r, "no reply within the command timeout");
            } else {
                arm(r, (int64_t)(r->progress_ms + (uint64_t)r->o.command_timeout_ms -
                                 uv_now(r->loop)));
            }
            return;
    }
}

hm_redis *hm_redis_new(uv_loop_t *loop, const hm_redis_opts *opts, hm_redis_state_fn state_fn,
                       void *ud) {
    hm_redis *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->loop = loop;
    r->o = *opts;
    r->host = strdup(opts->host ? opts->host : "127.0.0.1");
    r->password = opts->password ? strdup(opts->password) : NULL;
    if (!r->o.connect_timeout_ms) r->o.connect_timeout_ms = 2000;
    if (!r->o.command_timeout_ms) r->o.command_timeout_ms = 5000;
    if (!r->o.backoff_min_ms) r->o.backoff_min_ms = 100;
    if (!r->o.backoff_max_ms) r->o.backoff_max_ms = 5000;
    if (!r->o.max_pending) r->o.max_pending = 10000;
    r->o.host = r->host;
    r->o.password = r->password;
    r->backoff_ms = r->o.backoff_min_ms;
    r->state_fn = state_fn;
    r->ud = ud;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    connect_now(r);
    return r;
}

int hm_redis_command(hm_redis *r, int argc, const char **argv, const size_t *lens,
                     hm_redis_reply_fn fn, void *ud) {
    if (r->state != HM_REDIS_READY || !r->ac) return -ENOTCONN;
    if (r->pending >= r->o.max_pending) return -EAGAIN;
    command *c = malloc(sizeof(*c));
    if (!c) return -ENOMEM;
    *c = (command){r, fn, ud};
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -ENOTCONN;
    }
    if (r->pending++ == 0) {
        r->progress_ms = uv_now(r->loop);
        arm(r, r->o.command_timeout_ms);
    }
    return 0;
}

hm_redis_state hm_redis_get_state(const hm_redis *r) {
    return r->state;
}

size_t hm_redis_pending(const hm_redis *r) {
    return r->pending;
}

const char *hm_redis_last_error(const hm_redis *r) {
    return r->last_error;
}

uint64_t hm_redis_connects(const hm_redis *r) {
    return r->connects;
}

static void on_timer_closed(uv_handle_t *h) {
    hm_redis *r = h->data;
    void (*closed)(void *) = r->closed;
    void *cud = r->closed_ud;
    free(r->host);
    free(r->password);
    free(r);
    if (closed) closed(cud);
}

void hm_redis_close(hm_redis *r, void (*closed)(void *ud), void *ud) {
    r->closing = true;
    r->closed = closed;
    r->closed_ud = ud;
    drop(r, "closed");
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
