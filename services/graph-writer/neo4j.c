/*
 * neo4j.c: transactions over Neo4j's HTTP API on the loop (neo4j.h).
 */
#include "neo4j.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/http.h"

struct gw_neo4j {
    const gw_neo4j_config *cfg;
    hm_http *http;
};

typedef struct commit_call {
    gw_neo4j_cb cb;
    void *ud;
} commit_call;

static bool starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

void gw_neo4j_classify(int err, const char *error, long status, const char *body, size_t len,
                       gw_neo4j_result *out) {
    memset(out, 0, sizeof(*out));
    out->status = status;
    if (err != 0) {
        out->outcome = GW_NEO4J_TRANSIENT;
        snprintf(out->message, sizeof(out->message), "no answer: %s", error ? error : "");
        return;
    }
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *first = json_array_get(json_object_get(j, "errors"), 0);
    const char *code = json_string_value(json_object_get(first, "code"));
    const char *msg = json_string_value(json_object_get(first, "message"));
    snprintf(out->code, sizeof(out->code), "%s", code ? code : "");
    if (status >= 200 && status < 300 && j && !first) {
        out->outcome = GW_NEO4J_OK;
    } else if (status >= 500 || status == 429 || status == 401 || status == 403 || status == 404 ||
               (code && starts(code, "Neo.TransientError.")) ||
               (code && starts(code, "Neo.ClientError.Security.")) ||
               (code && starts(code, "Neo.ClientError.Database.DatabaseNotFound"))) {
        out->outcome = GW_NEO4J_TRANSIENT;
    } else if (!j) {
        out->outcome = status >= 200 && status < 300 ? GW_NEO4J_TRANSIENT : GW_NEO4J_REFUSED;
    } else {
        out->outcome = GW_NEO4J_REFUSED;
    }
    if (out->outcome != GW_NEO4J_OK) {
        if (msg)
            snprintf(out->message, sizeof(out->message), "%s: %s", code ? code : "error", msg);
        else
            snprintf(out->message, sizeof(out->message), "HTTP %ld: %.300s", status,
                     j ? "no error detail" : (len ? body : "empty answer"));
    }
    json_decref(j);
}

static void on_answer(void *ud, const hm_http_response *r) {
    commit_call *c = ud;
    gw_neo4j_result res;
    gw_neo4j_classify(r->err, r->error, r->status, r->body, r->body_len, &res);
    res.seconds = r->seconds;
    c->cb(c->ud, &res);
    free(c);
}

gw_neo4j *gw_neo4j_new(uv_loop_t *loop, const gw_neo4j_config *cfg) {
    gw_neo4j *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    n->cfg = cfg;
    n->http = hm_http_new(loop);
    if (!n->http) {
        free(n);
        return NULL;
    }
    return n;
}

int gw_neo4j_commit(gw_neo4j *n, const char *body, size_t len, gw_neo4j_cb cb, void *ud) {
    const gw_neo4j_config *c = n->cfg;
    char url[1024];
    int w = snprintf(url, sizeof(url), "%s/db/%s/tx/commit", c->url, c->database);
    if (w < 0 || (size_t)w >= sizeof(url)) return -ENAMETOOLONG;
    commit_call *call = malloc(sizeof(*call));
    if (!call) return -ENOMEM;
    *call = (commit_call){.cb = cb, .ud = ud};
    static const char *const headers[] = {"Content-Type: application/json",
                                          "Accept: application/json;charset=UTF-8"};
    hm_http_request q = {.method = "POST",
                         .url = url,
                         .headers = headers,
                         .n_headers = HM_ARRAY_LEN(headers),
                         .body = body,
                         .body_len = len,
                         .user = c->user,
                         .password = c->password ? c->password : "",
                         .timeout_ms = c->request_timeout_ms};
    int rc = hm_http_send(n->http, &q, on_answer, call, NULL);
    if (rc != 0) free(call);
    return rc;
}

void gw_neo4j_close(gw_neo4j *n) {
    if (!n) return;
    hm_http_close(n->http); /* a request in flight: on_answer with -ECANCELED, now */
    free(n);
}
