/*
 * state.c: the ingest-validator's per-partition state store (state.h): slabs
 * of key and symbol records, open-addressing hash maps over them, dirty lists,
 * tombstones, and the changelog format.
 *
 * Maps: linear probing on the high 32 bits of a 64-bit hash, kept at most half
 * full, with backward-shift deletion (no tombstone slots, so lookups never slow
 * down as keys come and go). A slot holds the record index and its hash bits,
 * so a probe touches the record only when the bits match.
 *
 * The hash is SipHash-1-3 under the state's random key (hash.h): symbols come
 * from the input, and with a fixed function anyone can search for symbols that
 * share a home slot and turn every lookup into a scan of one long run. Keyed
 * hashes are safe here because none of them leaves the process: the changelog
 * names keys by their text ("<exchange>|<symbol>"), and nothing walks a map's
 * slots in an order anyone sees (flushes follow the dirty lists, the sweep the
 * slabs, a symbol's keys their own list, feed-silence events are sorted by
 * exchange), so outputs, events and the changelog are the same under any key.
 *
 * Recency: each exchange's keys in a partition form a doubly linked list, least
 * recently seen first, kept in order by moving a key to the new end whenever a
 * trade reaches it (O(1)). iv_key.seen numbers those moves and goes into the
 * changelog, so that a restored partition can sort its lists back into the same
 * order (restore links keys in log order and marks the lists unsorted; the sort
 * runs once, at the first eviction). Evicting the least recently seen key of the
 * exchange with the most keys is O(exchanges).
 *
 * Changelog values are small JSON objects ("v":1 plus every field); doubles are
 * written with hm_json_double(), which reads back to the same bits, so an
 * engine restored from the changelog judges exactly as the one that wrote it.
 * Nothing here judges records or does I/O.
 */
#include "state.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing ----------------------------------------------------------------------------- */

uint64_t iv_key_hash(const iv_part *p, const char *exch, size_t exch_len, const char *sym,
                     size_t sym_len) {
    /* One pass over [exchange length][exchange][symbol]: the length byte keeps
     * ("ab", "C/D") and ("a", "bC/D") apart. */
    unsigned char b[1 + IV_EXCH_MAX + IV_SYM_MAX];
    assert(exch_len < IV_EXCH_MAX && sym_len < IV_SYM_MAX);
    b[0] = (unsigned char)exch_len;
    memcpy(b + 1, exch, exch_len);
    memcpy(b + 1 + exch_len, sym, sym_len);
    return hm_siphash13(&p->hkey, b, 1 + exch_len + sym_len);
}

uint64_t iv_sym_hash(const iv_part *p, const char *sym, size_t sym_len) {
    return hm_siphash13(&p->hkey, sym, sym_len);
}

static inline uint32_t h32_of(uint64_t h) {
    return (uint32_t)(h >> 32);
}

/* ---- maps -------------------------------------------------------------------------------- */

static void map_init(iv_map *m, uint32_t cap) {
    assert(cap && (cap & (cap - 1)) == 0);
    m->slots = hm_xmalloc((size_t)cap * sizeof(*m->slots));
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].idx = IV_NONE;
    m->mask = cap - 1;
    m->n = 0;
}

static void map_free(iv_map *m) {
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static void map_put_slot(iv_map *m, iv_slot s) {
    uint32_t i = s.h32 & m->mask;
    while (m->slots[i].idx != IV_NONE)
        i = (i + 1) & m->mask;
    m->slots[i] = s;
    m->n++;
}

static void map_insert(iv_map *m, uint64_t h, uint32_t idx) {
    if (!m->slots) map_init(m, 16);
    if ((uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        iv_map bigger;
        if (m->mask >= UINT32_MAX / 2) hm_panic("ingest-validator: state map is full");
        map_init(&bigger, (m->mask + 1) * 2);
        for (uint32_t i = 0; i <= m->mask; i++)
            if (m->slots[i].idx != IV_NONE) map_put_slot(&bigger, m->slots[i]);
        free(m->slots);
        *m = bigger;
    }
    map_put_slot(m, (iv_slot){idx, h32_of(h)});
}

static void map_probe_stats(const iv_map *m, iv_probe_stats *out) {
    memset(out, 0, sizeof(*out));
    if (!m->slots) return;
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->slots[i].idx == IV_NONE) continue;
        uint32_t d = (i - m->slots[i].h32) & m->mask;
        out->n++;
        out->sum_dist += d;
        if (d > out->max_dist) out->max_dist = d;
    }
}

static void map_remove(iv_map *m, uint64_t h, uint32_t idx) {
    uint32_t i = h32_of(h) & m->mask;
    while (m->slots[i].idx != idx) {
        assert(m->slots[i].idx != IV_NONE && "map_remove: index not in the map");
        i = (i + 1) & m->mask;
    }
    /* Backward shift: pull later entries of the probe run into the hole unless their
     * home slot lies cyclically in (hole, entry], where they must stay. */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->slots[j].idx == IV_NONE) break;
        uint32_t home = m->slots[j].h32 & m->mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        m->slots[i] = m->slots[j];
        i = j;
    }
    m->slots[i].idx = IV_NONE;
    m->n--;
}

/* ---- partitions -------------------------------------------------------------------------- */

static iv_part *part_new(const hm_hash_key *hkey) {
    iv_part *p = hm_xcalloc(1, sizeof(*p));
    p->hkey = *hkey;
    p->key_free = IV_NONE;
    p->sym_free = IV_NONE;
    return p;
}

static void part_free(iv_part *p) {
    if (!p) return;
    free(p->exchs);
    free(p->keys);
    free(p->syms);
    map_free(&p->key_map);
    map_free(&p->sym_map);
    free(p->dirty_keys);
    free(p->dirty_syms);
    hm_buf_free(&p->tombstones);
    free(p);
}

void iv_state_free(iv_state *s) {
    for (size_t i = 0; i < s->n_parts; i++)
        part_free(s->parts[i]);
    free(s->parts);
    s->parts = NULL;
    s->n_parts = 0;
}

iv_part *iv_state_part(iv_state *s, int32_t partition, bool create) {
    assert(partition >= 0);
    size_t i = (size_t)partition;
    if (HM_LIKELY(i < s->n_parts && s->parts[i])) return s->parts[i];
    if (!create) return NULL;
    if (i >= s->n_parts) {
        size_t n = s->n_parts ? s->n_parts : 4;
        while (n <= i)
            n *= 2;
        s->parts = hm_xrealloc(s->parts, n * sizeof(*s->parts));
        memset(s->parts + s->n_parts, 0, (n - s->n_parts) * sizeof(*s->parts));
        s->n_parts = n;
    }
    s->parts[i] = part_new(&s->hkey);
    return s->parts[i];
}

void iv_state_drop_part(iv_state *s, int32_t partition) {
    if (partition < 0 || (size_t)partition >= s->n_parts) return;
    part_free(s->parts[partition]);
    s->parts[partition] = NULL;
}

void iv_part_probe_stats(const iv_part *p, iv_probe_stats *keys, iv_probe_stats *syms) {
    map_probe_stats(&p->key_map, keys);
    map_probe_stats(&p->sym_map, syms);
}

/* ---- lookups ----------------------------------------------------------------------------- */

uint32_t iv_part_find_key(const iv_part *p, uint64_t h, const char *exch, size_t exch_len,
                          const char *sym, size_t sym_len) {
    const iv_map *m = &p->key_map;
    if (HM_UNLIKELY(!m->slots)) return IV_NONE;
    uint32_t hb = h32_of(h);
    for (uint32_t i = hb & m->mask;; i = (i + 1) & m->mask) {
        iv_slot s = m->slots[i];
        if (s.idx == IV_NONE) return IV_NONE;
        if (s.h32 != hb) continue;
        const iv_key *k = &p->keys[s.idx];
        if (k->hash != h || k->exch_len != exch_len || memcmp(k->exch, exch, exch_len) != 0)
            continue;
        const iv_sym *y = &p->syms[k->sym];
        if (y->name_len == sym_len && memcmp(y->name, sym, sym_len) == 0) return s.idx;
    }
}

uint32_t iv_part_find_sym(const iv_part *p, uint64_t h, const char *sym, size_t sym_len) {
    const iv_map *m = &p->sym_map;
    if (HM_UNLIKELY(!m->slots)) return IV_NONE;
    uint32_t hb = h32_of(h);
    for (uint32_t i = hb & m->mask;; i = (i + 1) & m->mask) {
        iv_slot s = m->slots[i];
        if (s.idx == IV_NONE) return IV_NONE;
        if (s.h32 != hb) continue;
        const iv_sym *y = &p->syms[s.idx];
        if (y->hash == h && y->name_len == sym_len && memcmp(y->name, sym, sym_len) == 0)
            return s.idx;
    }
}

/* ---- recency ----------------------------------------------------------------------------- */

static uint32_t exch_find(const iv_part *p, const char *exch, size_t len) {
    for (uint32_t i = 0; i < p->n_exchs; i++)
        if (p->exchs[i].len == len && memcmp(p->exchs[i].name, exch, len) == 0) return i;
    return IV_NONE;
}

static uint32_t exch_find_or_add(iv_part *p, const char *exch, size_t len) {
    uint32_t xk = exch_find(p, exch, len);
    if (xk != IV_NONE) return xk;
    if (p->n_exchs == p->exchs_cap) {
        p->exchs_cap = p->exchs_cap ? p->exchs_cap * 2 : 8;
        p->exchs = hm_xrealloc(p->exchs, (size_t)p->exchs_cap * sizeof(*p->exchs));
    }
    iv_exch_keys *x = &p->exchs[p->n_exchs];
    memset(x, 0, sizeof(*x));
    memcpy(x->name, exch, len);
    x->len = (uint8_t)len;
    x->oldest = x->newest = IV_NONE;
    return p->n_exchs++;
}

static inline void recency_unlink(iv_part *p, uint32_t ki) {
    iv_key *k = &p->keys[ki];
    iv_exch_keys *x = &p->exchs[k->xk];
    if (k->older != IV_NONE)
        p->keys[k->older].newer = k->newer;
    else
        x->oldest = k->newer;
    if (k->newer != IV_NONE)
        p->keys[k->newer].older = k->older;
    else
        x->newest = k->older;
    k->older = k->newer = IV_NONE;
}

static inline void recency_push_newest(iv_part *p, uint32_t ki) {
    iv_key *k = &p->keys[ki];
    iv_exch_keys *x = &p->exchs[k->xk];
    k->older = x->newest;
    k->newer = IV_NONE;
    if (x->newest != IV_NONE)
        p->keys[x->newest].newer = ki;
    else
        x->oldest = ki;
    x->newest = ki;
}

void iv_part_touch_key(iv_part *p, uint32_t ki) {
    iv_key *k = &p->keys[ki];
    k->seen = ++p->seen_clock;
    if (p->exchs[k->xk].newest != ki) {
        recency_unlink(p, ki);
        recency_push_newest(p, ki);
    }
}

static int cmp_names(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_recency(const void *a, const void *b, void *ud) {
    const iv_part *p = ud;
    const iv_key *x = &p->keys[*(const uint32_t *)a], *y = &p->keys[*(const uint32_t *)b];
    if (x->seen != y->seen) return x->seen < y->seen ? -1 : 1;
    /* Equal only for records of a changelog written before keys had a recency (all 0):
     * by symbol, so that every engine restored from it agrees. */
    const iv_sym *sx = &p->syms[x->sym], *sy = &p->syms[y->sym];
    return cmp_names(sx->name, sx->name_len, sy->name, sy->name_len);
}

/* After a restore: every exchange's list in the order of seen. O(keys log keys), once. */
static void recency_sort(iv_part *p) {
    uint32_t *v = hm_xmalloc((size_t)(p->n_keys ? p->n_keys : 1) * sizeof(*v));
    for (uint32_t xi = 0; xi < p->n_exchs; xi++) {
        iv_exch_keys *x = &p->exchs[xi];
        uint32_t n = 0;
        for (uint32_t j = x->oldest; j != IV_NONE; j = p->keys[j].newer)
            v[n++] = j;
        assert(n == x->n_keys);
        if (n > 1) qsort_r(v, n, sizeof(*v), cmp_recency, p);
        x->oldest = x->newest = IV_NONE;
        for (uint32_t i = 0; i < n; i++)
            recency_push_newest(p, v[i]);
    }
    free(v);
    p->recency_unsorted = false;
}

uint32_t iv_part_eviction_victim(iv_part *p, const char *exch, size_t exch_len) {
    if (p->n_keys == 0) return IV_NONE;
    if (p->recency_unsorted) recency_sort(p);
    uint32_t most = 0;
    for (uint32_t i = 0; i < p->n_exchs; i++)
        if (p->exchs[i].n_keys > most) most = p->exchs[i].n_keys;
    uint32_t own = exch_find(p, exch, exch_len);
    if (own != IV_NONE && p->exchs[own].n_keys == most) return p->exchs[own].oldest;
    const iv_exch_keys *best = NULL;
    for (uint32_t i = 0; i < p->n_exchs; i++) {
        const iv_exch_keys *x = &p->exchs[i];
        if (x->n_keys != most) continue;
        if (best) {
            uint64_t a = p->keys[x->oldest].seen, b = p->keys[best->oldest].seen;
            if (a > b || (a == b && cmp_names(x->name, x->len, best->name, best->len) > 0))
                continue;
        }
        best = x;
    }
    assert(best && "keys in the partition, so an exchange holds the most");
    return best ? best->oldest : IV_NONE;
}

/* ---- creation and removal ---------------------------------------------------------------- */

uint32_t iv_part_add_sym(iv_part *p, uint64_t h, const char *sym, size_t sym_len) {
    assert(sym_len > 0 && sym_len < IV_SYM_MAX);
    uint32_t si;
    if (p->sym_free != IV_NONE) {
        si = p->sym_free;
        p->sym_free = p->syms[si].next_free;
    } else {
        if (p->syms_len == p->syms_cap) {
            p->syms_cap = p->syms_cap ? p->syms_cap * 2 : 8;
            p->syms = hm_xrealloc(p->syms, (size_t)p->syms_cap * sizeof(*p->syms));
        }
        si = p->syms_len++;
    }
    iv_sym *y = &p->syms[si];
    memset(y, 0, sizeof(*y));
    y->hash = h;
    y->first_key = IV_NONE;
    y->next_free = IV_NONE;
    y->in_use = true;
    y->name_len = (uint8_t)sym_len;
    memcpy(y->name, sym, sym_len);
    map_insert(&p->sym_map, h, si);
    p->n_syms++;
    return si;
}

void iv_key_reset(iv_key *k) {
    /* Everything after the identity: the check state of a new key. */
    size_t from = offsetof(iv_key, has_ts);
    memset((char *)k + from, 0, sizeof(*k) - from);
    k->silent = false;
}

uint32_t iv_part_add_key(iv_part *p, uint64_t h, uint32_t si, const char *exch, size_t exch_len) {
    assert(exch_len > 0 && exch_len < IV_EXCH_MAX);
    assert(si < p->syms_len && p->syms[si].in_use);
    uint32_t ki;
    if (p->key_free != IV_NONE) {
        ki = p->key_free;
        p->key_free = p->keys[ki].next;
    } else {
        if (p->keys_len == p->keys_cap) {
            p->keys_cap = p->keys_cap ? p->keys_cap * 2 : 16;
            p->keys = hm_xrealloc(p->keys, (size_t)p->keys_cap * sizeof(*p->keys));
        }
        ki = p->keys_len++;
    }
    iv_key *k = &p->keys[ki];
    memset(k, 0, sizeof(*k));
    k->hash = h;
    k->sym = si;
    k->in_use = true;
    k->exch_len = (uint8_t)exch_len;
    memcpy(k->exch, exch, exch_len);
    iv_sym *y = &p->syms[si];
    k->next = y->first_key;
    y->first_key = ki;
    y->n_keys++;
    k->xk = exch_find_or_add(p, exch, exch_len);
    k->seen = p->seen_clock;
    recency_push_newest(p, ki);
    p->exchs[k->xk].n_keys++;
    map_insert(&p->key_map, h, ki);
    p->n_keys++;
    return ki;
}

/* ---- tombstones -------------------------------------------------------------------------- */

static void push_tombstone(iv_part *p, const hm_buf *key) {
    uint32_t n = (uint32_t)key->len;
    hm_buf_append(&p->tombstones, &n, sizeof(n));
    hm_buf_append(&p->tombstones, key->data, key->len);
    p->n_tombstones++;
}

void iv_part_drop_key(iv_part *p, uint32_t ki, bool tombstone) {
    assert(ki < p->keys_len && p->keys[ki].in_use);
    iv_key *k = &p->keys[ki];
    if (tombstone) {
        hm_buf name = HM_BUF_INIT;
        iv_key_changelog_key(p, k, &name);
        push_tombstone(p, &name);
        hm_buf_free(&name);
    }
    iv_sym *y = &p->syms[k->sym];
    uint32_t *link = &y->first_key;
    while (*link != ki) {
        assert(*link != IV_NONE && "key missing from its symbol's list");
        link = &p->keys[*link].next;
    }
    *link = k->next;
    y->n_keys--;
    recency_unlink(p, ki);
    p->exchs[k->xk].n_keys--;
    map_remove(&p->key_map, k->hash, ki);
    p->n_keys--;
    k->in_use = false;
    k->dirty = false;
    k->next = p->key_free;
    p->key_free = ki;
}

void iv_part_drop_sym(iv_part *p, uint32_t si, bool tombstone) {
    assert(si < p->syms_len && p->syms[si].in_use);
    while (p->syms[si].first_key != IV_NONE)
        iv_part_drop_key(p, p->syms[si].first_key, tombstone);
    iv_sym *y = &p->syms[si];
    if (tombstone) {
        hm_buf name = HM_BUF_INIT;
        iv_sym_changelog_key(y, &name);
        push_tombstone(p, &name);
        hm_buf_free(&name);
    }
    map_remove(&p->sym_map, y->hash, si);
    p->n_syms--;
    y->in_use = false;
    y->dirty = false;
    y->next_free = p->sym_free;
    p->sym_free = si;
}

/* ---- dirty tracking ---------------------------------------------------------------------- */

static void push_u32(uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t x) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = hm_xrealloc(*v, (size_t)*cap * sizeof(**v));
    }
    (*v)[(*n)++] = x;
}

void iv_part_push_dirty_key_(iv_part *p, uint32_t ki) {
    p->keys[ki].dirty = true;
    push_u32(&p->dirty_keys, &p->n_dirty_keys, &p->dirty_keys_cap, ki);
}

void iv_part_push_dirty_sym_(iv_part *p, uint32_t si) {
    p->syms[si].dirty = true;
    push_u32(&p->dirty_syms, &p->n_dirty_syms, &p->dirty_syms_cap, si);
}

void iv_part_clear_dirty(iv_part *p) {
    for (uint32_t i = 0; i < p->n_dirty_keys; i++)
        p->keys[p->dirty_keys[i]].dirty = false;
    for (uint32_t i = 0; i < p->n_dirty_syms; i++)
        p->syms[p->dirty_syms[i]].dirty = false;
    p->n_dirty_keys = 0;
    p->n_dirty_syms = 0;
    hm_buf_reset(&p->tombstones);
    p->n_tombstones = 0;
}

void iv_part_flush(iv_part *p, int32_t partition, hm_buf *scratch, iv_state_emit_fn fn, void *ud) {
    /* Tombstones first: a key dropped and created again since the last flush must
     * end up present when the log is replayed in order. */
    size_t off = 0;
    for (uint32_t i = 0; i < p->n_tombstones; i++) {
        uint32_t n;
        memcpy(&n, p->tombstones.data + off, sizeof(n));
        off += sizeof(n);
        fn(ud, partition, p->tombstones.data + off, n, NULL, 0);
        off += n;
    }
    hm_buf val = HM_BUF_INIT;
    for (uint32_t i = 0; i < p->n_dirty_syms; i++) {
        iv_sym *y = &p->syms[p->dirty_syms[i]];
        if (!y->in_use || !y->dirty) continue; /* dropped, or listed twice */
        y->dirty = false;
        hm_buf_reset(scratch);
        iv_sym_changelog_key(y, scratch);
        hm_buf_reset(&val);
        iv_sym_serialise(y, &val);
        fn(ud, partition, scratch->data, scratch->len, val.data, val.len);
    }
    for (uint32_t i = 0; i < p->n_dirty_keys; i++) {
        iv_key *k = &p->keys[p->dirty_keys[i]];
        if (!k->in_use || !k->dirty) continue;
        k->dirty = false;
        hm_buf_reset(scratch);
        iv_key_changelog_key(p, k, scratch);
        hm_buf_reset(&val);
        iv_key_serialise(k, &val);
        fn(ud, partition, scratch->data, scratch->len, val.data, val.len);
    }
    hm_buf_free(&val);
    p->n_dirty_keys = 0;
    p->n_dirty_syms = 0;
    hm_buf_reset(&p->tombstones);
    p->n_tombstones = 0;
}

/* ---- serialisation ----------------------------------------------------------------------- */

void iv_key_changelog_key(const iv_part *p, const iv_key *k, hm_buf *out) {
    const iv_sym *y = &p->syms[k->sym];
    hm_buf_append(out, k->exch, k->exch_len);
    hm_buf_putc(out, '|');
    hm_buf_append(out, y->name, y->name_len);
}

void iv_sym_changelog_key(const iv_sym *s, hm_buf *out) {
    hm_buf_putc(out, '|');
    hm_buf_append(out, s->name, s->name_len);
}

void iv_key_serialise(const iv_key *k, hm_buf *b) {
    hm_buf_append(b, "{\"v\":1", 6);
    hm_json_member_bool(b, "silent", k->silent);
    hm_json_member_bool(b, "has_ts", k->has_ts);
    hm_json_member_bool(b, "ts_had_id", k->last_ts_had_id);
    hm_json_member_i64(b, "last_ts", k->last_ts);
    hm_json_member_bool(b, "has_id", k->has_id);
    hm_json_member_bool(b, "id_numeric", k->last_id_numeric);
    /* uint64 ids and hashes travel as their int64 bit pattern (JSON integers are signed). */
    hm_json_member_i64(b, "last_id", (int64_t)k->last_id);
    hm_json_member_i64(b, "recent_pos", k->recent_pos);
    hm_json_member_i64(b, "recent_numeric", k->recent_numeric);
    hm_buf_append(b, ",\"recent\":[", 11);
    for (uint8_t i = 0; i < k->recent_n; i++) {
        if (i) hm_buf_putc(b, ',');
        hm_buf_i64(b, (int64_t)k->recent[i]);
    }
    hm_buf_putc(b, ']');
    hm_json_member_bool(b, "has_ref", k->has_ref);
    hm_json_member_i64(b, "ref_ts", k->ref_ts);
    hm_json_member_double(b, "ref", k->ref);
    hm_json_member_double(b, "ema", k->ema);
    hm_json_member_bool(b, "has_pending", k->has_pending);
    hm_json_member_double(b, "pending", k->pending);
    hm_json_member_i64(b, "pending_count", k->pending_count);
    hm_json_member_i64(b, "pending_ts", k->pending_ts);
    hm_json_member_bool(b, "has_level", k->has_level);
    hm_json_member_i64(b, "level_ts", k->level_ts);
    hm_json_member_i64(b, "vol_n", k->vol.n);
    hm_json_member_double(b, "vol_mean", k->vol.mean);
    hm_json_member_double(b, "vol_var", k->vol.var);
    hm_json_member_double(b, "vol_w", k->vol.w);
    hm_json_member_i64(b, "seen", (int64_t)k->seen);
    hm_buf_putc(b, '}');
}

void iv_sym_serialise(const iv_sym *s, hm_buf *b) {
    hm_buf_append(b, "{\"v\":1", 6);
    hm_json_member_bool(b, "has_wm", s->has_wm);
    hm_json_member_i64(b, "wm", s->wm);
    hm_json_member_i64(b, "scan_sec", s->scan_sec);
    hm_json_member_i64(b, "fut_n", s->fut_n);
    hm_json_member_i64(b, "fut_max", s->fut_max);
    hm_json_member_double(b, "gap_max", s->gap_max);
    hm_buf_putc(b, '}');
}

/* ---- restore ----------------------------------------------------------------------------- */

/* The fields of one changelog record being read: the first problem is kept in rc (and
 * err) and reading goes on, so a restore reads every field and checks rc once. */
typedef struct changelog_reader {
    json_t *obj;
    const char *key; /* the changelog key, for messages */
    int key_len;
    hm_err *err;
    int rc;
} changelog_reader;

static json_t *field_get(changelog_reader *r, const char *name) {
    json_t *v = json_object_get(r->obj, name);
    if (!v && r->rc == 0)
        r->rc = hm_err_set(r->err, -EINVAL, "changelog record '%.*s': field '%s' is missing",
                           r->key_len, r->key, name);
    return v;
}

static void field_fail(changelog_reader *r, const char *name, const char *what) {
    if (r->rc == 0)
        r->rc = hm_err_set(r->err, -EINVAL, "changelog record '%.*s': field '%s' is not %s",
                           r->key_len, r->key, name, what);
}

static bool field_bool(changelog_reader *r, const char *name) {
    json_t *v = field_get(r, name);
    if (v && !json_is_boolean(v)) field_fail(r, name, "a boolean");
    return v && json_is_true(v);
}

static int64_t field_i64(changelog_reader *r, const char *name, int64_t lo, int64_t hi) {
    json_t *v = field_get(r, name);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        field_fail(r, name, "an integer");
        return 0;
    }
    int64_t x = (int64_t)json_integer_value(v);
    if (x < lo || x > hi) {
        field_fail(r, name, "in range");
        return 0;
    }
    return x;
}

static double field_dbl(changelog_reader *r, const char *name) {
    json_t *v = field_get(r, name);
    if (!v) return 0;
    if (!json_is_number(v)) {
        field_fail(r, name, "a number");
        return 0;
    }
    return json_number_value(v);
}

static void restore_key_fields(changelog_reader *r, iv_key *k) {
    k->silent = field_bool(r, "silent");
    k->has_ts = field_bool(r, "has_ts");
    k->last_ts_had_id = field_bool(r, "ts_had_id");
    k->last_ts = field_i64(r, "last_ts", INT64_MIN, INT64_MAX);
    k->has_id = field_bool(r, "has_id");
    k->last_id_numeric = field_bool(r, "id_numeric");
    k->last_id = (uint64_t)field_i64(r, "last_id", INT64_MIN, INT64_MAX);
    k->recent_pos = (uint8_t)field_i64(r, "recent_pos", 0, IV_RECENT_IDS - 1);
    k->recent_numeric = (uint16_t)field_i64(r, "recent_numeric", 0, UINT16_MAX);
    json_t *arr = field_get(r, "recent");
    memset(k->recent, 0, sizeof(k->recent));
    k->recent_n = 0;
    if (arr && (!json_is_array(arr) || json_array_size(arr) > IV_RECENT_IDS)) {
        field_fail(r, "recent", "an array of at most 16 ids");
    } else if (arr) {
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *v = json_array_get(arr, i);
            if (!json_is_integer(v)) {
                field_fail(r, "recent", "an array of integers");
                break;
            }
            k->recent[i] = (uint64_t)json_integer_value(v);
        }
        k->recent_n = (uint8_t)json_array_size(arr);
    }
    k->has_ref = field_bool(r, "has_ref");
    k->ref_ts = field_i64(r, "ref_ts", INT64_MIN, INT64_MAX);
    k->ref = field_dbl(r, "ref");
    k->ema = field_dbl(r, "ema");
    k->has_pending = field_bool(r, "has_pending");
    k->pending = field_dbl(r, "pending");
    k->pending_count = field_i64(r, "pending_count", 0, INT64_MAX);
    k->pending_ts = field_i64(r, "pending_ts", INT64_MIN, INT64_MAX);
    k->has_level = field_bool(r, "has_level");
    k->level_ts = field_i64(r, "level_ts", INT64_MIN, INT64_MAX);
    k->vol.n = field_i64(r, "vol_n", 0, INT64_MAX);
    k->vol.mean = field_dbl(r, "vol_mean");
    k->vol.var = field_dbl(r, "vol_var");
    k->vol.w = field_dbl(r, "vol_w");
    /* Absent from records written before keys had a recency: the least recently seen. */
    k->seen = json_object_get(r->obj, "seen") ? (uint64_t)field_i64(r, "seen", 0, INT64_MAX) : 0;
}

static void restore_sym_fields(changelog_reader *r, iv_sym *s) {
    s->has_wm = field_bool(r, "has_wm");
    s->wm = field_i64(r, "wm", INT64_MIN, INT64_MAX);
    s->scan_sec = field_i64(r, "scan_sec", INT64_MIN, INT64_MAX);
    s->fut_n = field_i64(r, "fut_n", 0, INT64_MAX);
    s->fut_max = field_i64(r, "fut_max", INT64_MIN, INT64_MAX);
    /* Absent from records written before the rhythm was kept: none yet. (Such records
     * also carry "fut_min", which nothing reads any more.) */
    if (json_object_get(r->obj, "gap_max")) s->gap_max = field_dbl(r, "gap_max");
}

static uint32_t find_or_add_sym(iv_part *p, const char *sym, size_t n) {
    uint64_t h = iv_sym_hash(p, sym, n);
    uint32_t si = iv_part_find_sym(p, h, sym, n);
    return si != IV_NONE ? si : iv_part_add_sym(p, h, sym, n);
}

int iv_part_restore(iv_part *p, const char *key, size_t key_len, const char *val, size_t val_len,
                    hm_err *err) {
    int kl = key_len > 200 ? 200 : (int)key_len;
    const char *bar = key_len ? memrchr(key, '|', key_len) : NULL;
    if (!bar) return hm_err_set(err, -EINVAL, "changelog record '%.*s': key has no '|'", kl, key);
    size_t exch_len = (size_t)(bar - key);
    const char *sym = bar + 1;
    size_t sym_len = key_len - exch_len - 1;
    if (sym_len == 0 || sym_len >= IV_SYM_MAX || exch_len >= IV_EXCH_MAX)
        return hm_err_set(err, -EINVAL, "changelog record '%.*s': bad exchange or symbol length",
                          kl, key);
    bool is_sym = exch_len == 0;

    if (!val) { /* tombstone */
        uint32_t si = iv_part_find_sym(p, iv_sym_hash(p, sym, sym_len), sym, sym_len);
        if (si == IV_NONE) return 0;
        if (is_sym) {
            iv_part_drop_sym(p, si, false);
        } else {
            uint32_t ki = iv_part_find_key(p, iv_key_hash(p, key, exch_len, sym, sym_len), key,
                                           exch_len, sym, sym_len);
            if (ki != IV_NONE) iv_part_drop_key(p, ki, false);
        }
        return 0;
    }

    json_error_t jerr;
    json_t *obj = json_loadb(val, val_len, 0, &jerr);
    if (!obj || !json_is_object(obj)) {
        json_decref(obj);
        return hm_err_set(err, -EINVAL, "changelog record '%.*s': value is not a JSON object%s%s",
                          kl, key, obj ? "" : ": ", obj ? "" : jerr.text);
    }
    changelog_reader r = {obj, key, kl, err, 0};
    int64_t v = field_i64(&r, "v", INT64_MIN, INT64_MAX);
    if (r.rc == 0 && v != 1) {
        json_decref(obj);
        return hm_err_set(err, -EINVAL, "changelog record '%.*s': unknown version %lld", kl, key,
                          (long long)v);
    }
    /* Parse into a copy, so a bad record changes nothing. */
    if (is_sym) {
        iv_sym tmp;
        memset(&tmp, 0, sizeof(tmp));
        restore_sym_fields(&r, &tmp);
        if (r.rc == 0) {
            uint32_t si = find_or_add_sym(p, sym, sym_len);
            iv_sym *y = &p->syms[si];
            y->has_wm = tmp.has_wm;
            y->wm = tmp.wm;
            y->scan_sec = tmp.scan_sec;
            y->fut_n = tmp.fut_n;
            y->fut_max = tmp.fut_max;
            y->gap_max = tmp.gap_max;
        }
    } else {
        iv_key tmp;
        memset(&tmp, 0, sizeof(tmp));
        restore_key_fields(&r, &tmp);
        if (r.rc == 0) {
            uint32_t si = find_or_add_sym(p, sym, sym_len);
            uint64_t h = iv_key_hash(p, key, exch_len, sym, sym_len);
            uint32_t ki = iv_part_find_key(p, h, key, exch_len, sym, sym_len);
            if (ki == IV_NONE) ki = iv_part_add_key(p, h, si, key, exch_len);
            iv_key *k = &p->keys[ki];
            size_t from = offsetof(iv_key, has_ts);
            memcpy((char *)k + from, (char *)&tmp + from, sizeof(*k) - from);
            k->silent = tmp.silent;
            /* Linked where it was added, in log order: sorted by seen when it matters. */
            k->seen = tmp.seen;
            if (tmp.seen > p->seen_clock) p->seen_clock = tmp.seen;
            p->recency_unsorted = true;
        }
    }
    json_decref(obj);
    return r.rc;
}
