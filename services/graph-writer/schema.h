/*
 * schema.h: cypher/NNN_name.cypher, embedded in the binary at build time
 * (cmake/embed_files.cmake) and applied by the graph-writer at every start, one Neo4j
 * transaction per file in version order (Neo4j does not mix schema changes and writes in
 * one transaction: a file holds one or the other). Every statement is idempotent
 * (IF NOT EXISTS, MERGE), so applying them again changes nothing.
 */
#ifndef GW_SCHEMA_H
#define GW_SCHEMA_H

#include <stddef.h>

#include "himari/buf.h"
#include "himari/common.h"
#include "himari/embedded.h"

/** Every file, cypher/<version>_<name>.cypher, in version order (generated). */
extern const hm_embedded_file gw_cypher_files[];
extern const size_t gw_cypher_file_count;

/**
 * @brief The request body (POST /db/<name>/tx/commit) of one file's statements into out
 * (appended): the text split at each ';' that ends a line, `//` comment lines and blank
 * lines dropped. Returns how many statements it holds.
 */
size_t gw_schema_body(const char *text, size_t len, hm_buf *out);

#endif
