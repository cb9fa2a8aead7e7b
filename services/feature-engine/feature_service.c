/*
 * feature_service.c: FeatureService's handlers (feature_service.h).
 *
 * Every answer is built from the engine on the loop thread at the moment of the call, in
 * messages on the stack (protoc-c structs pointing at the engine's names and at local
 * arrays); hm_grpc_reply packs them before returning, so nothing outlives the handler.
 */
#include "feature_service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "himari/v1/features.pb-c.h"

#define MAX_SYMBOLS_PER_CALL 100
#define HISTORY_DEFAULT      100
#define HISTORY_MAX          1000

/* A symbol's newest message waiting for a stream's send slot. The packed bytes are
 * shared by every stream it waits on: an update is packed once, whatever the fan-out. */
typedef struct pending_msg {
    char symbol[FE_NAME_MAX];
    hm_grpc_packed *msg;
} pending_msg;

/* A stream: its call, what it watches, what changed since its last message. */
typedef struct stream {
    struct stream *next;
    fe_feature_service *fs;
    hm_grpc_call *call; /* NULL once finished */
    char (*watch)[FE_NAME_MAX];
    size_t n_watch; /* 0: every symbol */
    pending_msg *pending;
    size_t n_pending, cap_pending;
    bool in_flight;
} stream;

struct fe_feature_service {
    hm_service *svc;
    fe_engine *engine;
    stream *streams;
    size_t n_streams;
};

/* ---- messages ---------------------------------------------------------------------------- */

typedef struct features_msg {
    Himari__V1__Features f;
    Himari__V1__Features__ValuesEntry entries[FE_FEATURE_COUNT];
    Himari__V1__Features__ValuesEntry *ptrs[FE_FEATURE_COUNT];
} features_msg;

static void fill_features(features_msg *m, const char *symbol, const char *exchange,
                          const fe_features *x) {
    himari__v1__features__init(&m->f);
    m->f.symbol = (char *)symbol;
    m->f.exchange = (char *)(exchange ? exchange : "");
    m->f.timestamp_ms = x->as_of_ms - 1;
    m->f.last_trade_ms = x->last_trade_ms == FE_NO_SEC ? 0 : x->last_trade_ms;
    m->f.ticks = x->ticks;
    size_t n = 0;
    for (int i = 0; i < FE_FEATURE_COUNT; i++) {
        if (!fe_features_has(x, (fe_feature)i)) continue;
        himari__v1__features__values_entry__init(&m->entries[n]);
        m->entries[n].key = (char *)fe_feature_key((fe_feature)i);
        m->entries[n].value = x->v[i];
        m->ptrs[n] = &m->entries[n];
        n++;
    }
    m->f.n_values = n;
    m->f.values = m->ptrs;
}

/* A symbol's latest: across exchanges and each exchange. */
typedef struct symbol_msg {
    Himari__V1__SymbolFeatures s;
    features_msg all, ex[FE_MAX_EXCHANGES];
    Himari__V1__Features *ex_ptrs[FE_MAX_EXCHANGES];
    fe_features all_f, ex_f[FE_MAX_EXCHANGES];
    const char *names[FE_MAX_EXCHANGES];
} symbol_msg;

static int fill_symbol(fe_engine *e, const char *symbol, symbol_msg *m) {
    int n = fe_engine_latest_all(e, symbol, &m->all_f, m->ex_f, m->names, FE_MAX_EXCHANGES);
    if (n < 0) return n;
    himari__v1__symbol_features__init(&m->s);
    fill_features(&m->all, symbol, NULL, &m->all_f);
    m->s.features = &m->all.f;
    for (int i = 0; i < n; i++) {
        fill_features(&m->ex[i], symbol, m->names[i], &m->ex_f[i]);
        m->ex_ptrs[i] = &m->ex[i].f;
    }
    m->s.n_exchanges = (size_t)n;
    m->s.exchanges = m->ex_ptrs;
    return 0;
}

static bool symbol_ok(hm_grpc_call *call, const char *field, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= FE_NAME_MAX) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "%s: a symbol must be 1..%d bytes (\"BTC/USDT\"), got %zu", field,
                            FE_NAME_MAX - 1, n);
        return false;
    }
    return true;
}

/* ---- unary methods ----------------------------------------------------------------------- */

static void get_latest(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    fe_feature_service *fs = ud;
    const Himari__V1__GetLatestRequest *r = (const void *)req;
    if (!symbol_ok(call, "symbol", r->symbol)) return;
    if (r->exchange && *r->exchange) {
        fe_features x;
        if (strlen(r->exchange) >= FE_NAME_MAX ||
            fe_engine_latest(fs->engine, r->symbol, r->exchange, &x) != 0) {
            hm_grpc_reply_error(call, GRPC_STATUS_NOT_FOUND, "no features for %s on %s", r->symbol,
                                r->exchange);
            return;
        }
        features_msg one;
        fill_features(&one, r->symbol, r->exchange, &x);
        Himari__V1__SymbolFeatures s = HIMARI__V1__SYMBOL_FEATURES__INIT;
        s.features = &one.f;
        hm_grpc_reply(call, &s.base);
        return;
    }
    symbol_msg *m = malloc(sizeof(*m));
    if (!m) {
        hm_grpc_reply_error(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (fill_symbol(fs->engine, r->symbol, m) != 0) {
        hm_grpc_reply_error(call, GRPC_STATUS_NOT_FOUND, "no features for symbol %s", r->symbol);
    } else {
        hm_grpc_reply(call, &m->s.base);
    }
    free(m);
}

static void batch_get_latest(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    fe_feature_service *fs = ud;
    const Himari__V1__BatchGetLatestRequest *r = (const void *)req;
    if (r->n_symbols == 0 || r->n_symbols > MAX_SYMBOLS_PER_CALL) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "symbols: 1..%d symbols per call, got %zu", MAX_SYMBOLS_PER_CALL,
                            r->n_symbols);
        return;
    }
    for (size_t i = 0; i < r->n_symbols; i++) {
        char field[32];
        snprintf(field, sizeof(field), "symbols[%zu]", i);
        if (!symbol_ok(call, field, r->symbols[i])) return;
    }
    symbol_msg *m = calloc(r->n_symbols, sizeof(*m));
    Himari__V1__SymbolFeatures **found = calloc(r->n_symbols, sizeof(*found));
    char **missing = calloc(r->n_symbols, sizeof(*missing));
    if (!m || !found || !missing) {
        hm_grpc_reply_error(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        Himari__V1__BatchGetLatestResponse resp = HIMARI__V1__BATCH_GET_LATEST_RESPONSE__INIT;
        for (size_t i = 0; i < r->n_symbols; i++) {
            if (fill_symbol(fs->engine, r->symbols[i], &m[resp.n_found]) == 0) {
                found[resp.n_found] = &m[resp.n_found].s;
                resp.n_found++;
            } else {
                missing[resp.n_not_found++] = r->symbols[i];
            }
        }
        resp.found = found;
        resp.not_found = missing;
        hm_grpc_reply(call, &resp.base);
    }
    free(m);
    free(found);
    free(missing);
}

typedef struct history_acc {
    const char *symbol;
    Himari__V1__FeatureRecord *recs;
    features_msg *feats;
    Himari__V1__FeatureRecord **ptrs;
    size_t n;
} history_acc;

static void add_history(void *ud, const fe_history_entry *h) {
    history_acc *a = ud;
    himari__v1__feature_record__init(&a->recs[a->n]);
    a->recs[a->n].interval_start_ms = h->interval_start_ms;
    a->recs[a->n].interval_end_ms = h->interval_end_ms;
    fill_features(&a->feats[a->n], a->symbol, NULL, &h->features);
    a->recs[a->n].features = &a->feats[a->n].f;
    a->ptrs[a->n] = &a->recs[a->n];
    a->n++;
}

static void get_history(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    fe_feature_service *fs = ud;
    const Himari__V1__GetHistoryRequest *r = (const void *)req;
    if (!symbol_ok(call, "symbol", r->symbol)) return;
    if (r->limit > HISTORY_MAX) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT, "limit: at most %d, got %u",
                            HISTORY_MAX, (unsigned)r->limit);
        return;
    }
    if (r->from_ms < 0 || r->to_ms < 0 || (r->to_ms && r->from_ms > r->to_ms)) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "from_ms (%lld) and to_ms (%lld): need 0 <= from_ms <= to_ms (0: "
                            "unbounded)",
                            (long long)r->from_ms, (long long)r->to_ms);
        return;
    }
    size_t limit = r->limit ? r->limit : HISTORY_DEFAULT;
    history_acc a = {.symbol = r->symbol,
                     .recs = calloc(limit, sizeof(*a.recs)),
                     .feats = calloc(limit, sizeof(*a.feats)),
                     .ptrs = calloc(limit, sizeof(*a.ptrs))};
    if (!a.recs || !a.feats || !a.ptrs) {
        hm_grpc_reply_error(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else if (fe_engine_history(fs->engine, r->symbol, r->from_ms, r->to_ms, limit, add_history,
                                 &a) < 0) {
        hm_grpc_reply_error(call, GRPC_STATUS_NOT_FOUND, "no features for symbol %s", r->symbol);
    } else {
        Himari__V1__GetHistoryResponse resp = HIMARI__V1__GET_HISTORY_RESPONSE__INIT;
        resp.records = a.ptrs;
        resp.n_records = a.n;
        hm_grpc_reply(call, &resp.base);
    }
    free(a.recs);
    free(a.feats);
    free(a.ptrs);
}

typedef struct name_acc {
    char **v;
    size_t n, cap;
} name_acc;

static void add_name(void *ud, const char *symbol) {
    name_acc *a = ud;
    if (a->n < a->cap) a->v[a->n++] = (char *)symbol;
}

static int cmp_names(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void list_symbols(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    fe_feature_service *fs = ud;
    name_acc a = {.cap = fe_engine_symbols(fs->engine)};
    a.v = calloc(a.cap + 1, sizeof(*a.v));
    if (!a.v) {
        hm_grpc_reply_error(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fe_engine_each_symbol(fs->engine, add_name, &a);
    qsort(a.v, a.n, sizeof(*a.v), cmp_names);
    Himari__V1__ListSymbolsResponse resp = HIMARI__V1__LIST_SYMBOLS_RESPONSE__INIT;
    resp.symbols = a.v;
    resp.n_symbols = a.n;
    hm_grpc_reply(call, &resp.base);
    free(a.v);
}

/* ---- StreamFeatures ---------------------------------------------------------------------- */

static void pump(stream *s);

static void stream_free(stream *s) {
    fe_feature_service *fs = s->fs;
    for (stream **p = &fs->streams; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            fs->n_streams--;
            break;
        }
    }
    free(s->watch);
    for (size_t i = 0; i < s->n_pending; i++) {
        hm_grpc_packed_unref(s->pending[i].msg);
    }
    free(s->pending);
    free(s);
}

static void stream_end(stream *s, grpc_status_code code, const char *msg) {
    if (s->call) {
        hm_grpc_stream_finish(s->call, code, msg);
        s->call = NULL;
    }
    if (!s->in_flight) stream_free(s); /* else when the send completes */
}

static void stream_sent(hm_grpc_call *call, bool ok, void *ud) {
    (void)call;
    stream *s = ud;
    s->in_flight = false;
    if (!s->call) {
        stream_free(s);
        return;
    }
    if (!ok) {
        stream_end(s, GRPC_STATUS_CANCELLED, "client went away");
        return;
    }
    pump(s);
}

/* Send the oldest pending message when the stream's send slot is free (stream_sent
 * calls again when it is). */
static void pump(stream *s) {
    if (s->call && !s->in_flight && s->n_pending > 0) {
        hm_grpc_packed *msg = s->pending[0].msg;
        memmove(s->pending, s->pending + 1, (s->n_pending - 1) * sizeof(*s->pending));
        s->n_pending--;
        int rc = hm_grpc_stream_send_packed(s->call, msg, stream_sent, s);
        hm_grpc_packed_unref(msg); /* a send in flight holds the bytes itself */
        if (rc == 0) {
            s->in_flight = true;
        } else if (rc == -ECANCELED) {
            stream_end(s, GRPC_STATUS_CANCELLED, "cancelled"); /* may free s */
        }
    }
}

/* A symbol's latest as one packed message; NULL for a symbol without state (evicted,
 * dropped, never seen) or out of memory. */
static hm_grpc_packed *pack_symbol(fe_feature_service *fs, const char *symbol) {
    symbol_msg *m = malloc(sizeof(*m));
    hm_grpc_packed *p = NULL;
    if (m && fill_symbol(fs->engine, symbol, m) == 0) {
        p = hm_grpc_pack(&m->s.base);
    }
    free(m);
    return p;
}

static bool watches(const stream *s, const char *symbol) {
    if (s->n_watch == 0) return true;
    for (size_t i = 0; i < s->n_watch; i++) {
        if (!strcmp(s->watch[i], symbol)) return true;
    }
    return false;
}

/* Conflation: a symbol is pending once, with its newest message, however often it
 * changes before it is sent. */
static void add_pending(stream *s, const char *symbol, hm_grpc_packed *msg) {
    for (size_t i = 0; i < s->n_pending; i++) {
        if (!strcmp(s->pending[i].symbol, symbol)) {
            hm_grpc_packed_unref(s->pending[i].msg);
            s->pending[i].msg = hm_grpc_packed_ref(msg);
            return;
        }
    }
    if (s->n_pending == s->cap_pending) {
        size_t cap = s->cap_pending ? s->cap_pending * 2 : 8;
        pending_msg *p = realloc(s->pending, cap * sizeof(*p));
        if (!p) return; /* this stream gets the symbol's next change */
        s->pending = p;
        s->cap_pending = cap;
    }
    pending_msg *e = &s->pending[s->n_pending++];
    snprintf(e->symbol, FE_NAME_MAX, "%s", symbol);
    e->msg = hm_grpc_packed_ref(msg);
}

void fe_feature_service_changed(fe_feature_service *fs, const char *symbol) {
    hm_grpc_packed *msg = NULL;
    for (stream *s = fs->streams, *next; s; s = next) {
        next = s->next; /* pump may free s */
        if (s->call && watches(s, symbol)) {
            if (!msg && !(msg = pack_symbol(fs, symbol))) return;
            add_pending(s, symbol, msg);
            pump(s);
        }
    }
    hm_grpc_packed_unref(msg);
}

static void stream_cancelled(hm_grpc_call *call, void *ud) {
    (void)call;
    stream_end(ud, GRPC_STATUS_CANCELLED, "cancelled");
}

/* The symbol's current features, queued on stream ud (a stream's first messages). */
static void add_current(void *ud, const char *symbol) {
    stream *s = ud;
    hm_grpc_packed *msg = pack_symbol(s->fs, symbol);
    if (msg) {
        add_pending(s, symbol, msg);
        hm_grpc_packed_unref(msg);
    }
}

static void stream_features(hm_grpc_call *call, const ProtobufCMessage *req, void *ud) {
    fe_feature_service *fs = ud;
    const Himari__V1__StreamFeaturesRequest *r = (const void *)req;
    if (r->n_symbols > MAX_SYMBOLS_PER_CALL) {
        hm_grpc_reply_error(call, GRPC_STATUS_INVALID_ARGUMENT,
                            "symbols: at most %d per stream (none: every symbol), got %zu",
                            MAX_SYMBOLS_PER_CALL, r->n_symbols);
        return;
    }
    for (size_t i = 0; i < r->n_symbols; i++) {
        char field[32];
        snprintf(field, sizeof(field), "symbols[%zu]", i);
        if (!symbol_ok(call, field, r->symbols[i])) return;
    }
    stream *s = calloc(1, sizeof(*s));
    if (!s || (r->n_symbols && !(s->watch = calloc(r->n_symbols, sizeof(*s->watch))))) {
        free(s);
        hm_grpc_reply_error(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->fs = fs;
    s->call = call;
    for (size_t i = 0; i < r->n_symbols; i++) {
        snprintf(s->watch[i], FE_NAME_MAX, "%s", r->symbols[i]);
    }
    s->n_watch = r->n_symbols;
    s->next = fs->streams;
    fs->streams = s;
    fs->n_streams++;
    hm_grpc_call_on_cancel(call, stream_cancelled, s);
    /* First the current features of what it watches, then every change. */
    if (s->n_watch == 0) {
        fe_engine_each_symbol(fs->engine, add_current, s);
    } else {
        for (size_t i = 0; i < s->n_watch; i++)
            add_current(s, s->watch[i]);
    }
    pump(s);
}

static const hm_grpc_method k_methods[] = {
    {"GetLatest", get_latest, 0},     {"BatchGetLatest", batch_get_latest, 0},
    {"GetHistory", get_history, 0},   {"StreamFeatures", stream_features, HM_GRPC_STREAMING},
    {"ListSymbols", list_symbols, 0},
};

fe_feature_service *fe_feature_service_new(hm_service *svc, fe_engine *engine) {
    fe_feature_service *fs = calloc(1, sizeof(*fs));
    if (!fs) return NULL;
    fs->svc = svc;
    fs->engine = engine;
    hm_service_add_grpc(svc, &himari__v1__feature_service__descriptor, k_methods,
                        HM_ARRAY_LEN(k_methods), fs);
    return fs;
}

void fe_feature_service_free(fe_feature_service *fs) {
    if (!fs) return;
    while (fs->streams) {
        fs->streams->in_flight = false;
        stream_free(fs->streams);
    }
    free(fs);
}
