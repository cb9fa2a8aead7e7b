/*
 * embedded.h: a file of the source tree compiled into a binary (cmake/embed_files.cmake):
 * the archiver's sql/ migrations, the graph-writer's cypher/ schema. The files are named
 * NNN_name.ext; the generated array holds them in version order.
 */
#ifndef HIMARI_EMBEDDED_H
#define HIMARI_EMBEDDED_H

#include <stddef.h>

typedef struct hm_embedded_file {
    int version;      /* NNN */
    const char *name; /* name, without the version and the extension */
    const char *text; /* the file's bytes, NUL-terminated */
    size_t len;       /* ... without the NUL */
} hm_embedded_file;

#endif
