/*
 * himarictl: the operator's CLI for a HIMARI service's ControlService and
 * grpc.health.v1 endpoint (proto/himari/v1/control.proto), and a strategy's quick look at
 * the feature-engine's FeatureService (proto/himari/v1/features.proto).
 *
 *   himarictl [--target HOST:PORT] [--token-file FILE] [--timeout MS] [--json]
 *             status | watch [--interval MS] [--count N] | pause | resume
 *             | reload [--path FILE] | drain | health [--service NAME]
 *             | features SYMBOL [--exchange NAME]     (the feature-engine's FeatureService)
 *
 * A tool, not a service: it blocks on its one call and exits. Output goes to
 * stdout (a block per message, or one JSON object per line with --json);
 * errors go to stderr as "himarictl: <method>: <STATUS>: <message>".
 * Exit codes: 0 success (health: SERVING), 1 a call failed or the service is
 * not serving, 2 usage.
 *
 * Must never: print the token, or send it with a call that does not need it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_client.h"
#include "ctl_format.h"
#include "himari/buf.h"
#include "himari/common.h"
#include "himari/grpc.h"

#define DEFAULT_TARGET     "127.0.0.1:9081"
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_TOKEN_BYTES    4096
#define SVC                "/himari.v1.ControlService/"

typedef struct ctl_opts {
    const char *target;
    const char *token_file;
    int64_t timeout_ms;
    bool json;
    const char *command;
    int64_t interval_ms;  /* watch; -1: server default */
    int64_t count;        /* watch; 0: until the stream ends */
    const char *path;     /* reload */
    const char *service;  /* health */
    const char *symbol;   /* features */
    const char *exchange; /* features */
} ctl_opts;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: himarictl [--target HOST:PORT] [--token-file FILE] [--timeout MS] [--json]\n"
        "                 COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  status                           the service's state, counters and partitions\n"
        "  watch [--interval MS] [--count N]  stream the status (until N messages or the end)\n"
        "  pause                            stop consuming (needs the token)\n"
        "  resume                           consume again (needs the token)\n"
        "  reload [--path FILE]             re-read the configuration file the service was\n"
        "                                   started with; --path, if given, must name it\n"
        "                                   exactly (needs the token)\n"
        "  drain                            finish in-flight work and exit (needs the token)\n"
        "  health [--service NAME]          grpc.health.v1 Check; exit 0 only when SERVING\n"
        "  features SYMBOL [--exchange EX]  the feature-engine's latest features of SYMBOL\n"
        "                                   (FeatureService.GetLatest; --target its gRPC port)\n"
        "\n"
        "options:\n"
        "  --target HOST:PORT   default $HIMARI_GRPC_TARGET or " DEFAULT_TARGET "\n"
        "  --token-file FILE    bearer token file, default $HIMARI_GRPC_TOKEN_FILE\n"
        "  --timeout MS         deadline of a unary call, default %d\n"
        "  --json               one JSON object per message\n"
        "\n"
        "exit: 0 ok, 1 the call failed (or health is not SERVING), 2 usage\n",
        DEFAULT_TIMEOUT_MS);
}

static int usage_error(const char *fmt, ...) HM_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("himarictl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(himarictl --help for usage)\n", stderr);
    return 2;
}

/* A non-negative decimal that fits in int64; -EINVAL otherwise. */
static int parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return -EINVAL;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0) return -EINVAL;
    *out = v;
    return 0;
}

/* "--name VALUE" or "--name=VALUE": the value, advancing *i; NULL if absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *matched) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    *matched = false;
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') {
        *matched = true;
        return a + n + 1;
    }
    if (a[n] != '\0') return NULL;
    *matched = true;
    if (*i + 1 >= argc) return NULL;
    (*i)++;
    return argv[*i];
}

static bool command_known(const char *c) {
    static const char *const cmds[] = {"status", "watch", "pause",  "resume",
                                       "reload", "drain", "health", "features"};
    for (size_t i = 0; i < HM_ARRAY_LEN(cmds); i++) {
        if (strcmp(c, cmds[i]) == 0) return true;
    }
    return false;
}

/* @return 0, 2 for a usage error (printed), or -1 for --help (printed). */
static int parse_args(int argc, char **argv, ctl_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool m = false;
        const char *v;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--target", &m)) || m) {
            if (!v || !*v) return usage_error("%s needs HOST:PORT", "--target");
            o->target = v;
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--token-file", &m)) || m) {
            if (!v || !*v) return usage_error("%s needs a file", "--token-file");
            o->token_file = v;
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--timeout", &m)) || m) {
            if (parse_i64(v, &o->timeout_ms) != 0 || o->timeout_ms == 0)
                return usage_error("--timeout needs milliseconds > 0, not '%s'", v ? v : "");
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--interval", &m)) || m) {
            if (parse_i64(v, &o->interval_ms) != 0 || o->interval_ms > UINT32_MAX)
                return usage_error("--interval needs milliseconds, not '%s'", v ? v : "");
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--count", &m)) || m) {
            if (parse_i64(v, &o->count) != 0 || o->count == 0)
                return usage_error("--count needs a number > 0, not '%s'", v ? v : "");
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--path", &m)) || m) {
            if (!v || !*v) return usage_error("%s needs a file", "--path");
            o->path = v;
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--service", &m)) || m) {
            if (!v) return usage_error("%s needs a name", "--service");
            o->service = v;
            continue;
        }
        if ((v = opt_value(argc, argv, &i, "--exchange", &m)) || m) {
            if (!v || !*v) return usage_error("%s needs a name", "--exchange");
            o->exchange = v;
            continue;
        }
        if (a[0] == '-') return usage_error("unknown option '%s'", a);
        if (o->command && strcmp(o->command, "features") == 0 && !o->symbol) {
            o->symbol = a;
            continue;
        }
        if (o->command) return usage_error("one command at a time ('%s' is extra)", a);
        if (!command_known(a)) return usage_error("unknown command '%s'", a);
        o->command = a;
    }
    if (!o->command) return usage_error("%s", "no command given");
    bool watch = strcmp(o->command, "watch") == 0;
    if (!watch && (o->interval_ms >= 0 || o->count > 0))
        return usage_error("--interval and --count go with watch, not %s", o->command);
    if (o->path && strcmp(o->command, "reload") != 0)
        return usage_error("--path goes with reload, not %s", o->command);
    if (o->service && strcmp(o->command, "health") != 0)
        return usage_error("--service goes with health, not %s", o->command);
    bool features = strcmp(o->command, "features") == 0;
    if (features && !o->symbol) return usage_error("%s", "features needs a SYMBOL (BTC/USDT)");
    if (o->exchange && !features)
        return usage_error("--exchange goes with features, not %s", o->command);
    return 0;
}

static int call_failed(const ctl_client *c, const char *method, const ctl_result *res) {
    fprintf(stderr, "himarictl: %s: %s: %s", method, hm_grpc_status_name(res->code),
            res->message[0] ? res->message : "(no message)");
    /* Connection trouble: say where we tried. */
    if (res->code == GRPC_STATUS_UNAVAILABLE || res->code == GRPC_STATUS_DEADLINE_EXCEEDED)
        fprintf(stderr, " (target %s)", ctl_client_target(c));
    fputc('\n', stderr);
    return 1;
}

static void emit(hm_buf *out) {
    fwrite(out->data, 1, out->len, stdout);
    fflush(stdout);
    hm_buf_reset(out);
}

/* The "authorization" value from the token file; NULL (with a message) on error. */
static char *load_auth(const char *token_file) {
    if (!token_file || !*token_file) {
        fprintf(stderr, "himarictl: this command needs the service's token: give --token-file "
                        "or set HIMARI_GRPC_TOKEN_FILE\n");
        return NULL;
    }
    char *tok = NULL;
    size_t len = 0;
    hm_err err;
    if (hm_read_file(token_file, MAX_TOKEN_BYTES, &tok, &len, &err) != 0) {
        fprintf(stderr, "himarictl: token file: %s\n", err.msg);
        return NULL;
    }
    /* Editors add one newline; strip exactly one (CRLF included). */
    if (len > 0 && tok[len - 1] == '\n') tok[--len] = '\0';
    if (len > 0 && tok[len - 1] == '\r') tok[--len] = '\0';
    if (len == 0) {
        fprintf(stderr, "himarictl: token file %s is empty\n", token_file);
        free(tok);
        return NULL;
    }
    size_t n = len + sizeof("Bearer ");
    char *auth = hm_xmalloc(n);
    snprintf(auth, n, "Bearer %s", tok);
    memset(tok, 0, len);
    free(tok);
    return auth;
}

static int cmd_status(ctl_client *c, const ctl_opts *o, hm_buf *out) {
    Himari__V1__GetStatusRequest req = HIMARI__V1__GET_STATUS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    ctl_result res;
    (void)ctl_unary(c, SVC "GetStatus", &req.base, &himari__v1__status__descriptor, NULL,
                    o->timeout_ms, &resp, &res);
    if (res.code != GRPC_STATUS_OK) return call_failed(c, "GetStatus", &res);
    ctl_format_status(out, (const Himari__V1__Status *)resp, o->json);
    emit(out);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_watch(ctl_client *c, const ctl_opts *o, hm_buf *out) {
    Himari__V1__WatchStatusRequest req = HIMARI__V1__WATCH_STATUS_REQUEST__INIT;
    if (o->interval_ms >= 0) req.interval_ms = (uint32_t)o->interval_ms;
    ctl_stream *st = NULL;
    (void)ctl_stream_open(c, SVC "WatchStatus", &req.base, NULL, 0, &st);
    int64_t seen = 0;
    bool cancelled = false;
    for (;;) {
        ProtobufCMessage *m = NULL;
        int rc = ctl_stream_next(st, &himari__v1__status__descriptor, &m);
        if (rc <= 0) {
            if (rc < 0) {
                ctl_stream_cancel(st);
                cancelled = true;
            }
            break;
        }
        if (!o->json && seen > 0) hm_buf_putc(out, '\n');
        ctl_format_status(out, (const Himari__V1__Status *)m, o->json);
        emit(out);
        protobuf_c_message_free_unpacked(m, NULL);
        if (o->count > 0 && ++seen >= o->count) {
            ctl_stream_cancel(st);
            cancelled = true;
            break;
        }
        if (o->count == 0) seen++;
    }
    ctl_result res;
    ctl_stream_close(st, &res);
    if (cancelled && o->count > 0 && seen >= o->count) return 0;
    if (res.code != GRPC_STATUS_OK) return call_failed(c, "WatchStatus", &res);
    return 0;
}

static int cmd_mutating(ctl_client *c, const ctl_opts *o, hm_buf *out) {
    char *auth = load_auth(o->token_file);
    if (!auth) return 1;
    ProtobufCMessage *resp = NULL;
    ctl_result res;
    const char *method;
    if (strcmp(o->command, "pause") == 0) {
        Himari__V1__PauseRequest req = HIMARI__V1__PAUSE_REQUEST__INIT;
        method = "Pause";
        (void)ctl_unary(c, SVC "Pause", &req.base, &himari__v1__pause_response__descriptor, auth,
                        o->timeout_ms, &resp, &res);
    } else if (strcmp(o->command, "resume") == 0) {
        Himari__V1__ResumeRequest req = HIMARI__V1__RESUME_REQUEST__INIT;
        method = "Resume";
        (void)ctl_unary(c, SVC "Resume", &req.base, &himari__v1__resume_response__descriptor, auth,
                        o->timeout_ms, &resp, &res);
    } else if (strcmp(o->command, "reload") == 0) {
        Himari__V1__ReloadConfigRequest req = HIMARI__V1__RELOAD_CONFIG_REQUEST__INIT;
        req.path = (char *)(o->path ? o->path : "");
        method = "ReloadConfig";
        (void)ctl_unary(c, SVC "ReloadConfig", &req.base,
                        &himari__v1__reload_config_response__descriptor, auth, o->timeout_ms, &resp,
                        &res);
    } else {
        Himari__V1__DrainRequest req = HIMARI__V1__DRAIN_REQUEST__INIT;
        method = "Drain";
        (void)ctl_unary(c, SVC "Drain", &req.base, &himari__v1__drain_response__descriptor, auth,
                        o->timeout_ms, &resp, &res);
    }
    memset(auth, 0, strlen(auth));
    free(auth);
    if (res.code != GRPC_STATUS_OK) return call_failed(c, method, &res);
    if (strcmp(method, "Pause") == 0)
        ctl_format_state(out, (int)((Himari__V1__PauseResponse *)resp)->state, o->json);
    else if (strcmp(method, "Resume") == 0)
        ctl_format_state(out, (int)((Himari__V1__ResumeResponse *)resp)->state, o->json);
    else if (strcmp(method, "ReloadConfig") == 0)
        ctl_format_reload(out, (Himari__V1__ReloadConfigResponse *)resp, o->json);
    else
        ctl_format_drain(out, (Himari__V1__DrainResponse *)resp, o->json);
    emit(out);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

static int cmd_health(ctl_client *c, const ctl_opts *o, hm_buf *out) {
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(o->service ? o->service : "");
    ProtobufCMessage *resp = NULL;
    ctl_result res;
    (void)ctl_unary(c, "/grpc.health.v1.Health/Check", &req.base,
                    &grpc__health__v1__health_check_response__descriptor, NULL, o->timeout_ms,
                    &resp, &res);
    if (res.code != GRPC_STATUS_OK) return call_failed(c, "Health/Check", &res);
    int status = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    ctl_format_health(out, req.service, status, o->json);
    emit(out);
    protobuf_c_message_free_unpacked(resp, NULL);
    return status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 1;
}

static int cmd_features(ctl_client *c, const ctl_opts *o, hm_buf *out) {
    Himari__V1__GetLatestRequest req = HIMARI__V1__GET_LATEST_REQUEST__INIT;
    req.symbol = (char *)o->symbol;
    req.exchange = (char *)(o->exchange ? o->exchange : "");
    ProtobufCMessage *resp = NULL;
    ctl_result res;
    (void)ctl_unary(c, "/himari.v1.FeatureService/GetLatest", &req.base,
                    &himari__v1__symbol_features__descriptor, NULL, o->timeout_ms, &resp, &res);
    if (res.code != GRPC_STATUS_OK) return call_failed(c, "FeatureService/GetLatest", &res);
    ctl_format_features(out, (const Himari__V1__SymbolFeatures *)resp, o->json);
    emit(out);
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}

int main(int argc, char **argv) {
    ctl_opts o = {.timeout_ms = DEFAULT_TIMEOUT_MS, .interval_ms = -1};
    const char *env_target = getenv("HIMARI_GRPC_TARGET");
    o.target = (env_target && *env_target) ? env_target : DEFAULT_TARGET;
    o.token_file = getenv("HIMARI_GRPC_TOKEN_FILE");
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return 0;
    if (rc != 0) return rc;

    ctl_client *c = ctl_client_new(o.target);
    hm_buf out = HM_BUF_INIT;
    if (strcmp(o.command, "status") == 0)
        rc = cmd_status(c, &o, &out);
    else if (strcmp(o.command, "watch") == 0)
        rc = cmd_watch(c, &o, &out);
    else if (strcmp(o.command, "health") == 0)
        rc = cmd_health(c, &o, &out);
    else if (strcmp(o.command, "features") == 0)
        rc = cmd_features(c, &o, &out);
    else
        rc = cmd_mutating(c, &o, &out);
    hm_buf_free(&out);
    ctl_client_free(c);
    return rc;
}
