/*
 * schema.c: a cypher/ file into one transaction's statements (schema.h).
 */
#include "schema.h"

#include <stdbool.h>
#include <string.h>

/* One statement's text (trimmed) as an entry of the statements array. */
static void put_statement(hm_buf *out, const char *s, size_t n, size_t *count) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t'))
        n--;
    if (n == 0) return;
    if (*count > 0) hm_buf_putc(out, ',');
    HM_BUF_PUT_LIT(out, "{\"statement\":");
    hm_json_str(out, s, n);
    hm_buf_putc(out, '}');
    (*count)++;
}

size_t gw_schema_body(const char *text, size_t len, hm_buf *out) {
    HM_BUF_PUT_LIT(out, "{\"statements\":[");
    hm_buf stmt = {0};
    size_t count = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *line = text + i;
        size_t n = end - i;
        i = end + 1;
        size_t lead = 0;
        while (lead < n && (line[lead] == ' ' || line[lead] == '\t'))
            lead++;
        if (lead == n || (n - lead >= 2 && line[lead] == '/' && line[lead + 1] == '/')) continue;
        while (n > lead && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
            n--;
        bool ends = line[n - 1] == ';';
        hm_buf_append(&stmt, line, ends ? n - 1 : n);
        hm_buf_putc(&stmt, '\n');
        if (ends) {
            put_statement(out, stmt.data, stmt.len, &count);
            hm_buf_reset(&stmt);
        }
    }
    if (stmt.len > 0) put_statement(out, stmt.data, stmt.len, &count); /* no final ';' */
    hm_buf_free(&stmt);
    HM_BUF_PUT_LIT(out, "]}");
    return count;
}
