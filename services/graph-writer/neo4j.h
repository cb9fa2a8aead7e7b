/*
 * neo4j.h: the graph-writer's Neo4j client: one transaction per request to the HTTP
 * transactional endpoint (POST <url>/db/<database>/tx/commit, basic auth), on the loop
 * through hm_http. Why HTTP and not Bolt: docs/ARCHITECTURE.md ("The graph-writer and
 * Neo4j").
 *
 * Neo4j answers 200 even when a statement failed (the transaction is then rolled back and
 * the errors list says why), so the outcome is read from the body: gw_neo4j_classify is
 * the pure part, exported for the unit tests.
 */
#ifndef GW_NEO4J_H
#define GW_NEO4J_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "himari/common.h"

/** Where Neo4j is (section "neo4j"). */
typedef struct gw_neo4j_config {
    char *url; /* http://127.0.0.1:7474 */
    char *database;
    char *user;
    char *password; /* secret: neo4j.password_file */
    int64_t request_timeout_ms;
} gw_neo4j_config;

typedef enum gw_neo4j_outcome {
    GW_NEO4J_OK = 0,
    GW_NEO4J_TRANSIENT, /* try the same transaction again later: server away, busy, deadlock */
    GW_NEO4J_REFUSED,   /* the statements or their data were refused: sending them again
                           gives the same answer */
} gw_neo4j_outcome;

/** A transaction's end. */
typedef struct gw_neo4j_result {
    gw_neo4j_outcome outcome;
    long status;       /* HTTP status, 0 when none came */
    char code[96];     /* Neo4j's error code (Neo.TransientError...) or "" */
    char message[400]; /* why, for logs and /status; "" when OK */
    double seconds;
} gw_neo4j_result;

typedef void (*gw_neo4j_cb)(void *ud, const gw_neo4j_result *r);

typedef struct gw_neo4j gw_neo4j;

/** @brief A client; cfg is read at every request (a reload may change it). */
gw_neo4j *gw_neo4j_new(uv_loop_t *loop, const gw_neo4j_config *cfg);
/**
 * @brief Run body (a {"statements": [...]} document) as one transaction. body is
 * referenced until cb. cb runs once, on the loop. Returns 0 or a negative errno (then cb
 * does not run).
 */
int gw_neo4j_commit(gw_neo4j *n, const char *body, size_t len, gw_neo4j_cb cb,
                    void *ud) HM_MUST_CHECK;
/** @brief Close: a transaction in flight ends with TRANSIENT ("client closed"). */
void gw_neo4j_close(gw_neo4j *n);

/**
 * @brief The outcome of an answer: transport error (err != 0, error text), HTTP status
 * and body. 2xx with an empty errors list: OK. Neo.TransientError.*, 5xx, 429, transport
 * errors, and authentication or availability failures (401, 403, 404 of the database:
 * an operator or a restart fixes them): TRANSIENT. Every other error: REFUSED.
 */
void gw_neo4j_classify(int err, const char *error, long status, const char *body, size_t len,
                       gw_neo4j_result *out);

#endif
