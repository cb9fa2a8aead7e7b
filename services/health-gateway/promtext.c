/*
 * promtext.c: sample lines of the Prometheus text format (promtext.h):
 *   name{label="value",...} value [timestamp]
 * A label value may hold \" \\ and \n escapes, and so a '}' or ','; the scanner follows
 * quotes. It never reads past len.
 */
#include "promtext.h"

#include <stdlib.h>
#include <string.h>

static bool name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The end of a label block starting after '{': the index of its '}', or len. */
static size_t labels_end(const char *s, size_t i, size_t len) {
    bool quoted = false;
    for (; i < len && s[i] != '\n'; i++) {
        if (quoted && s[i] == '\\') {
            i++;
        } else if (s[i] == '"') {
            quoted = !quoted;
        } else if (!quoted && s[i] == '}') {
            return i;
        }
    }
    return len;
}

static void scan_line(const char *s, size_t len, hg_sample_fn fn, void *ud) {
    size_t i = 0;
    while (i < len && name_char(s[i], i == 0))
        i++;
    if (i == 0) return;
    size_t name_len = i;
    const char *labels = "";
    size_t labels_len = 0;
    if (i < len && s[i] == '{') {
        size_t end = labels_end(s, i + 1, len);
        if (end >= len) return;
        labels = s + i + 1;
        labels_len = end - i - 1;
        i = end + 1;
    }
    if (i >= len || s[i] != ' ') return;
    while (i < len && s[i] == ' ')
        i++;
    char num[64];
    size_t n = 0;
    while (i < len && s[i] != ' ' && n + 1 < sizeof(num))
        num[n++] = s[i++];
    num[n] = '\0';
    if (n == 0) return;
    char *endp;
    double v = strtod(num, &endp);
    if (*endp != '\0') return;
    fn(ud, s, name_len, labels, labels_len, v);
}

void hg_promtext_scan(const char *text, size_t len, hg_sample_fn fn, void *ud) {
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        if (end > i && text[i] != '#') scan_line(text + i, end - i, fn, ud);
        i = end + 1;
    }
}

bool hg_promtext_label(const char *labels, size_t len, const char *key, char *out,
                       size_t out_size) {
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        while (i < len && (labels[i] == ',' || labels[i] == ' '))
            i++;
        size_t k0 = i;
        while (i < len && labels[i] != '=')
            i++;
        size_t k1 = i;
        if (i + 1 >= len || labels[i + 1] != '"') return false;
        i += 2;
        bool match = k1 - k0 == klen && memcmp(labels + k0, key, klen) == 0;
        size_t o = 0;
        bool fits = true;
        while (i < len && labels[i] != '"') {
            char c = labels[i];
            if (c == '\\' && i + 1 < len) {
                c = labels[++i] == 'n' ? '\n' : labels[i];
            }
            if (match) {
                if (o + 1 < out_size)
                    out[o++] = c;
                else
                    fits = false;
            }
            i++;
        }
        if (i >= len) return false;
        i++; /* the closing quote */
        if (match) {
            out[o] = '\0';
            return fits;
        }
    }
    return false;
}
