/*
 * page.h: the status page (status.html), embedded into the binary at build time
 * (cmake/embed_files.cmake) so the gateway serves it with no file beside it.
 */
#ifndef HG_PAGE_H
#define HG_PAGE_H

#include "himari/embedded.h"

extern const hm_embedded_file hg_page_files[];
extern const size_t hg_page_file_count;

#endif
