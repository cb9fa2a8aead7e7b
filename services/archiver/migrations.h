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

/** One embedded migration: sql/<version>_<name>.sql. */
typedef struct hm_sql_migration {
    int version;
    const char *name;
    const char *sql; /* NUL-terminated */
    size_t len;
} hm_sql_migration;

/** Every migration, in version order (generated). */
extern const hm_sql_migration hm_sql_migrations[];
extern const size_t hm_sql_migration_count;

#endif
