/*
 * himari/redis.h: one Redis connection on the service's loop (hiredis async over its
 * libuv adapter), that keeps itself connected.
 *
 *   DOWN --connect--> CONNECTING --TCP up, AUTH, SELECT ok--> READY
 *     ^                   |                                    |
 *     '---- back-off <----'---- refused, AUTH error, timeout <-'-- server gone, reply late
 *
 * Commands are pipelined: hm_redis_command queues one and returns at once; its callback
 * gets the reply, or NULL when the connection went away first (every pending callback is
 * called exactly once). A command is refused (-ENOTCONN) unless READY, and (-EAGAIN) when
 * max_pending are in flight, so a caller that keeps state to write can hold it and write
 * the current values when the connection is back: memory never grows with an outage.
 * Reconnection backs off from backoff_min_ms doubling to backoff_max_ms; a reply later
 * than command_timeout_ms (hiredis 0.14 has no read timeout) and a connect slower than
 * connect_timeout_ms drop the connection. Everything runs on the loop; nothing blocks.
 * The health-gateway's probes use the same client.
 */
#ifndef HIMARI_REDIS_H
#define HIMARI_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "himari/common.h"
#include "himari/config.h"

typedef struct hm_redis hm_redis;

/** Where a service's Redis is (config section "redis"). */
typedef struct hm_redis_config {
    char *host;
    int64_t port;
    char *password; /* secret: redis.password_file */
    int64_t db;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
} hm_redis_config;

/** The "redis.*" keys; offsets are relative to an hm_redis_config. */
extern const hm_cfg_key hm_redis_config_keys[];
extern const size_t hm_redis_config_keys_n;

typedef enum hm_redis_state {
    HM_REDIS_DOWN = 0,   /* not connected; a reconnect is scheduled (or closing) */
    HM_REDIS_CONNECTING, /* TCP connect, AUTH and SELECT in flight */
    HM_REDIS_READY,      /* commands are accepted */
} hm_redis_state;

typedef struct hm_redis_opts {
    const char *host; /* copied */
    int port;
    const char *password;       /* copied; NULL or "": no AUTH */
    int64_t db;                 /* SELECT after AUTH */
    int64_t connect_timeout_ms; /* 0: 2000 */
    int64_t command_timeout_ms; /* 0: 5000 */
    int64_t backoff_min_ms;     /* 0: 100 */
    int64_t backoff_max_ms;     /* 0: 5000 */
    size_t max_pending;         /* 0: 10000 commands in flight */
} hm_redis_opts;

/** A command's reply (NULL: the connection went away first). Freed by the client after. */
typedef void (*hm_redis_reply_fn)(hm_redis *r, const redisReply *reply, void *ud);
/** The connection changed state (READY after a reconnect: time to write everything). */
typedef void (*hm_redis_state_fn)(hm_redis *r, hm_redis_state state, void *ud);

/**
 * @brief A client on loop; it connects at once and keeps connecting. state_fn may be
 * NULL. @return the client (close with hm_redis_close), or NULL out of memory.
 */
hm_redis *hm_redis_new(uv_loop_t *loop, const hm_redis_opts *opts, hm_redis_state_fn state_fn,
                       void *ud);

/**
 * @brief Queue one command (argv[i] of lens[i] bytes, copied). @return 0 (fn will be
 * called once), -ENOTCONN when not READY, -EAGAIN at max_pending (fn is not called).
 */
int hm_redis_command(hm_redis *r, int argc, const char **argv, const size_t *lens,
                     hm_redis_reply_fn fn, void *ud) HM_MUST_CHECK;

/** @brief The options of a loaded configuration (its strings stay the config's). */
hm_redis_opts hm_redis_opts_of(const hm_redis_config *c);

hm_redis_state hm_redis_get_state(const hm_redis *r);
/** @brief "down", "connecting", "ready". */
const char *hm_redis_state_name(hm_redis_state s);
size_t hm_redis_pending(const hm_redis *r);
/** @brief Why the last connection ended or failed ("" if none did). */
const char *hm_redis_last_error(const hm_redis *r);
/** @brief Connections made READY so far (a reconnect counts). */
uint64_t hm_redis_connects(const hm_redis *r);

/**
 * @brief Drop the connection (pending callbacks get NULL), stop reconnecting, close the
 * handles; closed(ud) runs when the loop holds nothing of it any more, then it is freed.
 */
void hm_redis_close(hm_redis *r, void (*closed)(void *ud), void *ud);

#endif
