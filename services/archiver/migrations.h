/*
 * migrations.h: the archiver's schema migrations, sql/NNN_name.sql embedded in the binary
 * at build time (cmake/embed_sql.cmake writes build/gen/sql_migrations.c), so the binary
 * alone brings a database to its schema (`archiver --migrate`, and at every start).
 *
 * ar_migrations_sql returns one script that applies every migration not yet recorded in
 * schema_migrations, each in its own transaction under an advisory lock, and refuses a
 * recorded migration whose checksum changed (docs/ARCHIVER.md, "Migrations").
 */
#ifndef ARCHIVER_MIGRATIONS_H
#define ARCHIVER_MIGRATIONS_H

#include <stddef.h>

#include "himari/common.h"
#include "himari/embedded.h"

/** Every migration, sql/<version>_<name>.sql, in version order (generated). */
extern const hm_embedded_file hm_sql_migrations[];
extern const size_t hm_sql_migration_count;

/** The first query of a run: take the migration lock, create the bookkeeping tables,
 *  decide the storage path once ("plain" or "timescaledb", kept in himari_meta), and
 *  return one row: (storage, "version:checksum,..." of what is applied). */
extern const char ar_migrations_bootstrap_sql[];
/** The last query of a run (the lock is also released when the connection closes). */
extern const char ar_migrations_unlock_sql[];

/** What a run still has to do: queries to send one by one, in order. */
typedef struct ar_migration_plan {
    char **steps;
    size_t n_steps;
    size_t n_pending;  /* migrations to apply (of this storage path) */
    size_t n_applied;  /* migrations already recorded */
    char storage[16];  /* "plain" | "timescaledb" */
    char unknown[128]; /* versions recorded that this binary does not know (a newer one's) */
} ar_migration_plan;

/**
 * @brief Plan a run from the bootstrap's row. Refuses (-EINVAL, err naming the file) when a
 * recorded migration's checksum differs from the embedded file's: migrations are never
 * edited once applied; a change is a new file. Free with ar_migration_plan_free.
 */
int ar_migrations_plan(const char *storage, const char *applied, ar_migration_plan *out,
                       hm_err *err) HM_MUST_CHECK;
void ar_migration_plan_free(ar_migration_plan *p);

/** @brief SHA-256 of a migration's text as 64 hex characters + NUL. */
void ar_migration_checksum(const hm_embedded_file *m, char out[65]);

#endif
