/*
 * himari/grpc.h: a gRPC server (grpc C core + protobuf-c) whose handlers run
 * on the service's libuv loop.
 *
 * grpc core delivers its results on a completion queue, which someone must
 * block on. One helper thread does exactly that and nothing else: it hands
 * each (tag, ok) event to the loop through a mutex-protected list and
 * uv_async_send. Everything else (routing, decoding, handlers, replies, call
 * memory) lives on the loop thread, so a handler may use any loop-owned state
 * and may answer later (after an async Kafka or Redis operation) through the
 * reply functions below.
 *
 * Routing is table-driven from protoc-c's service descriptors: a service
 * registers {method name, handler, flags} rows; the server matches the call's
 * path "/pkg.Service/Method" to a row, unpacks the request with the method's
 * input descriptor and packs replies with its output descriptor. Unknown
 * methods get UNIMPLEMENTED; undecodable requests INVALID_ARGUMENT; requests
 * over max_request_bytes RESOURCE_EXHAUSTED (grpc core refuses them).
 * Mutating rows need "authorization: Bearer <token>": missing ->
 * UNAUTHENTICATED, wrong -> PERMISSION_DENIED (compared in constant time);
 * with no token configured, mutating methods are refused (PERMISSION_DENIED).
 *
 * Deadlines are enforced by grpc core (the client sees DEADLINE_EXCEEDED);
 * the server notices through the call's close-on-server op, marks the call
 * cancelled and tells the handler (on_cancel), so nothing leaks when a client
 * cancels or its deadline passes while a handler is still working.
 *
 * grpc.health.v1.Health (Check, Watch) is built in: a service sets the status
 * of "" (the whole server) and of its own services with hm_grpc_health_set.
 *
 * Streams that stay open (every HM_GRPC_STREAMING row: ControlService's
 * WatchStatus, grpc.health.v1 Watch) are capped for the whole process
 * (max_watch_streams): they need no token and each one holds a call, a timer
 * and, for WatchStatus, a Status rebuilt every interval, while grpc core only
 * bounds streams per connection. A call beyond the cap gets RESOURCE_EXHAUSTED
 * before its request is read. A stream counts until its call is freed.
 *
 * Per connection (grpc core enforces them): max_concurrent_streams (sent in
 * SETTINGS), a connection without a call is closed after max_connection_idle_ms,
 * one older than max_connection_age_ms gets GOAWAY and 30 s for its calls,
 * pings are policed (a third ping within 5 min without data or a call is
 * GOAWAY ENHANCE_YOUR_CALM), request metadata is at most 8 KiB.
 *
 * There is no TLS: the channel, and the bearer token in it, is in clear. So a
 * bind that is not a loopback address is refused unless the caller says
 * allow_insecure_remote (a TLS-terminating proxy in front, or a network that
 * is trusted), and then it is logged once at start (grpc_insecure_remote).
 *
 * Metrics: himari_grpc_calls_total{method,code}, himari_grpc_handling_seconds{method},
 * himari_grpc_watch_streams (open now), himari_grpc_watch_streams_refused_total.
 */
#ifndef HIMARI_GRPC_H
#define HIMARI_GRPC_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <uv.h>

#include "himari/common.h"
#include "himari/metrics.h"

typedef struct hm_grpc_server hm_grpc_server;
typedef struct hm_grpc_call hm_grpc_call;

typedef struct hm_grpc_opts {
    const char *bind;               /* NULL or "": 127.0.0.1 */
    bool allow_insecure_remote;     /* serve a bind off loopback, without TLS (warned) */
    int port;                       /* 0: pick a free port (see hm_grpc_server_port) */
    const char *token;              /* bearer token for mutating methods; NULL/"": none set */
    size_t max_request_bytes;       /* 0: 65536 */
    int max_watch_streams;          /* open streaming calls, whole process; 0: 16 */
    int max_concurrent_streams;     /* per HTTP/2 connection (SETTINGS); 0: 32 */
    int64_t max_connection_idle_ms; /* a connection without a call is closed; 0: 300000 */
    int64_t max_connection_age_ms;  /* a connection older is closed (GOAWAY + 30 s); 0: none */
    hm_metrics *metrics;            /* may not be NULL */
} hm_grpc_opts;

/**
 * @brief A handler: runs on the loop with the decoded request (owned by the
 * call, valid until the call is finished). It must eventually finish the call:
 * hm_grpc_reply / hm_grpc_reply_error for unary methods, hm_grpc_stream_finish
 * for streaming ones (also after on_cancel).
 */
typedef void (*hm_grpc_handler)(hm_grpc_call *call, const ProtobufCMessage *request, void *ud);

enum {
    HM_GRPC_MUTATING = 1u << 0, /* needs the bearer token */
    HM_GRPC_STREAMING = 1u << 1 /* server-streaming method */
};

/** One row of a service's method table. */
typedef struct hm_grpc_method {
    const char *name; /* as in the .proto, "GetStatus" */
    hm_grpc_handler handler;
    unsigned flags; /* HM_GRPC_* */
} hm_grpc_method;

/**
 * @brief Start serving on bind:port. Fails (nothing left open) when the port
 * cannot be bound (-EADDRINUSE) or when bind is off loopback without
 * allow_insecure_remote (-EPERM); err names the address.
 */
int hm_grpc_server_start(uv_loop_t *loop, const hm_grpc_opts *opts, hm_grpc_server **out,
                         hm_err *err) HM_MUST_CHECK;

/** @brief The port actually bound. */
int hm_grpc_server_port(const hm_grpc_server *s);

/**
 * @brief Add a service: each row's name must be a method of svc (checked:
 * a typo aborts at start-up, not at the first call); ud is passed to handlers.
 * Calls to methods of svc without a row get UNIMPLEMENTED.
 */
void hm_grpc_server_add_service(hm_grpc_server *s, const ProtobufCServiceDescriptor *svc,
                                const hm_grpc_method *methods, size_t n_methods, void *ud);

/** @brief Replace the bearer token (ReloadConfig). */
void hm_grpc_server_set_token(hm_grpc_server *s, const char *token);

/**
 * @brief Stop accepting calls, cancel those in flight (handlers get
 * on_cancel), wait for grpc core to release everything, join the queue
 * thread, free s; done runs on the loop afterwards.
 */
void hm_grpc_server_shutdown(hm_grpc_server *s, void (*done)(void *ud), void *ud);

/* ---- answering a call ----------------------------------------------------- */

/** @brief Unary: send resp (packed with the method's output descriptor) and OK. */
void hm_grpc_reply(hm_grpc_call *call, const ProtobufCMessage *resp);
/** @brief Unary or streaming: finish with a status code and message. */
void hm_grpc_reply_error(hm_grpc_call *call, grpc_status_code code, const char *fmt, ...)
    HM_PRINTF(3, 4);

/**
 * @brief Streaming: send one message. One send may be in flight per call;
 * sent (may be NULL) runs on the loop when it completed (ok false: the client
 * went away; finish the call then).
 * @return 0, -EBUSY while a send is in flight, -ECANCELED if the call is cancelled.
 */
int hm_grpc_stream_send(hm_grpc_call *call, const ProtobufCMessage *msg,
                        void (*sent)(hm_grpc_call *call, bool ok, void *ud), void *ud);

/**
 * A message packed once and sent on any number of streams (a fan-out packs each update
 * once, not once per subscriber). Reference counted: each send in flight holds the bytes;
 * the creator drops its reference with hm_grpc_packed_unref whenever it likes.
 */
typedef struct hm_grpc_packed hm_grpc_packed;
/** @return msg packed (one reference), or NULL when out of memory. */
hm_grpc_packed *hm_grpc_pack(const ProtobufCMessage *msg);
hm_grpc_packed *hm_grpc_packed_ref(hm_grpc_packed *p);
void hm_grpc_packed_unref(hm_grpc_packed *p);
/** @brief hm_grpc_stream_send of a packed message (of the method's output type). */
int hm_grpc_stream_send_packed(hm_grpc_call *call, hm_grpc_packed *p,
                               void (*sent)(hm_grpc_call *call, bool ok, void *ud), void *ud);

/** @brief Streaming: finish with a status (OK ends the stream normally). */
void hm_grpc_stream_finish(hm_grpc_call *call, grpc_status_code code, const char *msg);

/**
 * @brief Be told (on the loop) when the client cancels or the deadline passes
 * while the handler still holds the call. The handler must still finish the
 * call (its reply is then discarded by grpc core).
 */
void hm_grpc_call_on_cancel(hm_grpc_call *call, void (*cb)(hm_grpc_call *call, void *ud), void *ud);
bool hm_grpc_call_cancelled(const hm_grpc_call *call);
/** @brief Milliseconds left before the call's deadline; INT64_MAX when none. */
int64_t hm_grpc_call_remaining_ms(const hm_grpc_call *call);
/** @brief The method name ("GetStatus"). */
const char *hm_grpc_call_method(const hm_grpc_call *call);
/** @brief Per-call slot for the handler's own context. */
void hm_grpc_call_set_data(hm_grpc_call *call, void *data);
void *hm_grpc_call_data(const hm_grpc_call *call);

/* ---- grpc.health.v1 -------------------------------------------------------- */

typedef enum hm_health_status {
    HM_HEALTH_UNKNOWN = 0,
    HM_HEALTH_SERVING = 1,
    HM_HEALTH_NOT_SERVING = 2,
} hm_health_status;

/**
 * @brief Set the health of a service name ("" = the server as a whole);
 * Watch streams see the change. Unset names answer NOT_FOUND to Check and
 * SERVICE_UNKNOWN to Watch, as the protocol says.
 */
void hm_grpc_health_set(hm_grpc_server *s, const char *service, hm_health_status status);

/* ---- pure helpers (unit-tested) -------------------------------------------- */

/** @brief "OK", "INVALID_ARGUMENT", ... for metrics and logs. */
const char *hm_grpc_status_name(grpc_status_code code);

/**
 * @brief Check an authorization metadata value against the token.
 * @return GRPC_STATUS_OK, GRPC_STATUS_UNAUTHENTICATED (absent or not
 * "Bearer <token>"), or GRPC_STATUS_PERMISSION_DENIED (wrong token, or no
 * token configured). value may be NULL (absent).
 */
grpc_status_code hm_grpc_check_bearer(const char *token, const char *value, size_t value_len);

/**
 * @brief Split "/pkg.Service/Method" into service and method parts.
 * @return 0, or -EINVAL for a malformed path.
 */
int hm_grpc_split_path(const char *path, size_t len, const char **svc, size_t *svc_len,
                       const char **method, size_t *method_len) HM_MUST_CHECK;

#endif
