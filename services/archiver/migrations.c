/*
 * migrations.c: planning a migration run (migrations.h). Pure: the bootstrap query's
 * answer in, the queries to send out; pg.c (on the loop) and the --migrate command
 * (blocking) send them the same way.
 *
 * A file's first comment lines may say
 *   -- path: plain | timescaledb     applied only on that storage path (else on both)
 *   -- transaction: none             sent statement by statement, outside a transaction
 *                                    (what TimescaleDB's continuous aggregates need);
 *                                    its statements must be idempotent
 * Every other file runs in one transaction with the row that records it, so a failure
 * leaves nothing behind and the next run tries it again.
 */
#include "migrations.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "himari/buf.h"

const char ar_migrations_bootstrap_sql[] =
    "SELECT pg_advisory_lock(hashtext('himari.migrations'));\n"
    "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
    "    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,\n"
    "    applied_at TIMESTAMPTZ NOT NULL DEFAULT now());\n"
    "CREATE TABLE IF NOT EXISTS himari_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "INSERT INTO himari_meta VALUES ('storage',\n"
    "    CASE WHEN EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')\n"
    "          AND current_setting('shared_preload_libraries') ~ 'timescaledb'\n"
    "    THEN 'timescaledb' ELSE 'plain' END) ON CONFLICT DO NOTHING;\n"
    "SELECT (SELECT value FROM himari_meta WHERE key = 'storage'),\n"
    "       coalesce(string_agg(version || ':' || checksum, ',' ORDER BY version), '')\n"
    "FROM schema_migrations;";

const char ar_migrations_unlock_sql[] = "SELECT pg_advisory_unlock(hashtext('himari.migrations'))";

void ar_migration_checksum(const hm_embedded_file *m, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(m->text, m->len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

/* The value of a "-- key: value" line among the file's leading comments, or NULL. */
static const char *header(const hm_embedded_file *m, const char *key, char *val, size_t cap) {
    const char *p = m->text;
    size_t klen = strlen(key);
    while (strncmp(p, "--", 2) == 0) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *q = p + 2;
        while (*q == ' ')
            q++;
        if ((size_t)(q - p) + klen + 1 <= n && strncmp(q, key, klen) == 0 && q[klen] == ':') {
            q += klen + 1;
            while (*q == ' ')
                q++;
            size_t vl = (size_t)(p + n - q);
            if (vl >= cap) vl = cap - 1;
            memcpy(val, q, vl);
            val[vl] = '\0';
            return val;
        }
        if (!eol) break;
        p = eol + 1;
    }
    return NULL;
}

static void add_step(ar_migration_plan *p, hm_buf *b) {
    p->steps = hm_xrealloc(p->steps, (p->n_steps + 1) * sizeof(*p->steps));
    p->steps[p->n_steps++] = hm_xstrndup(b->data ? b->data : "", b->len);
    hm_buf_reset(b);
}

static void put_record(hm_buf *b, const hm_embedded_file *m, const char *sum) {
    hm_buf_printf(b,
                  "INSERT INTO schema_migrations (version, name, checksum) VALUES (%d, '%s', "
                  "'%s');\n",
                  m->version, m->name, sum);
}

/* A "transaction: none" file, one statement per step: statements end with ';' at the end
 * of a line outside dollar-quoted bodies. */
static void add_statements(ar_migration_plan *p, const hm_embedded_file *m, hm_buf *b) {
    const char *s = m->text, *line = s;
    bool in_dollar = false;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) + 1 : strlen(line);
        for (const char *q = line; q + 1 < line + n; q++)
            if (q[0] == '$' && q[1] == '$') {
                in_dollar = !in_dollar;
                q++;
            }
        size_t t = n;
        while (t > 0 && (line[t - 1] == '\n' || line[t - 1] == ' ' || line[t - 1] == '\r'))
            t--;
        bool is_comment = strncmp(line, "--", 2) == 0;
        if (!is_comment || b->len) hm_buf_append(b, line, n);
        if (!in_dollar && t > 0 && line[t - 1] == ';' && !is_comment) add_step(p, b);
        line += n;
    }
    if (b->len) add_step(p, b);
}

static const char *recorded(const char *applied, int version, char sum[65]) {
    for (const char *p = applied; p && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (*end != ':') return NULL;
        const char *c = end + 1;
        const char *next = strchr(c, ',');
        size_t n = next ? (size_t)(next - c) : strlen(c);
        if (v == version) {
            snprintf(sum, 65, "%.*s", (int)n, c);
            return sum;
        }
        p = next ? next + 1 : NULL;
    }
    return NULL;
}

static void note_unknown(ar_migration_plan *p, const char *applied) {
    for (const char *q = applied; q && *q;) {
        long v = strtol(q, NULL, 10);
        bool known = false;
        for (size_t i = 0; i < hm_sql_migration_count; i++)
            known |= hm_sql_migrations[i].version == v && hm_sql_migrations[i].len > 0;
        if (!known) {
            size_t l = strlen(p->unknown);
            snprintf(p->unknown + l, sizeof(p->unknown) - l, "%s%ld", l ? "," : "", v);
        }
        q = strchr(q, ',');
        if (q) q++;
    }
}

int ar_migrations_plan(const char *storage, const char *applied, ar_migration_plan *out,
                       hm_err *err) {
    memset(out, 0, sizeof(*out));
    if (strcmp(storage, "plain") != 0 && strcmp(storage, "timescaledb") != 0)
        return hm_err_set(err, -EINVAL,
                          "himari_meta.storage is '%s', neither plain nor timescaledb", storage);
    snprintf(out->storage, sizeof(out->storage), "%s", storage);
    note_unknown(out, applied);
    hm_buf b = HM_BUF_INIT;
    for (size_t i = 0; i < hm_sql_migration_count; i++) {
        const hm_embedded_file *m = &hm_sql_migrations[i];
        if (m->len == 0) continue;
        char sum[65], have[65], path[32], txn[16];
        ar_migration_checksum(m, sum);
        if (recorded(applied, m->version, have)) {
            if (strcmp(have, sum) != 0) {
                ar_migration_plan_free(out);
                hm_buf_free(&b);
                return hm_err_set(err, -EINVAL,
                                  "sql/%03d_%s.sql changed after it was applied (checksum %.12s "
                                  "in schema_migrations, %.12s in this build): an applied "
                                  "migration is never edited; add a new one",
                                  m->version, m->name, have, sum);
            }
            out->n_applied++;
            continue;
        }
        if (header(m, "path", path, sizeof(path)) && strcmp(path, storage) != 0) continue;
        out->n_pending++;
        if (header(m, "transaction", txn, sizeof(txn)) && strcmp(txn, "none") == 0) {
            add_statements(out, m, &b);
            put_record(&b, m, sum);
            add_step(out, &b);
            continue;
        }
        hm_buf_puts(&b, "BEGIN;\n");
        hm_buf_append(&b, m->text, m->len);
        hm_buf_puts(&b, "\n;\n");
        put_record(&b, m, sum);
        hm_buf_puts(&b, "COMMIT;");
        add_step(out, &b);
    }
    hm_buf_free(&b);
    return 0;
}

void ar_migration_plan_free(ar_migration_plan *p) {
    for (size_t i = 0; i < p->n_steps; i++)
        free(p->steps[i]);
    free(p->steps);
    p->steps = NULL;
    p->n_steps = 0;
}
