/*
 * state.h: the ingest-validator's per-partition check state: one record per
 * (exchange, symbol) key and one per symbol, found through open-addressing
 * hash maps, with dirty tracking, each exchange's keys in order of recency (which
 * key to evict when a partition is full), and the changelog (de)serialisation.
 *
 * Sits under engine.c, which decides what the fields mean; this module only
 * stores, finds, drops, serialises and restores them. It never judges a
 * record, never does I/O, and never allocates per lookup (only when a key or
 * symbol is created, or a map grows).
 */
#ifndef IV_STATE_H
#define IV_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checks.h"
#include "himari/hash.h"
#include "himari/buf.h"
#include "himari/common.h"

#define IV_NONE       UINT32_MAX /* "no index" */
#define IV_RECENT_IDS 16         /* trade ids per key remembered for DUPLICATE_TRADE_ID */
#define IV_SYM_MAX    48         /* bytes of a symbol, NUL included (BASE/QUOTE <= 41) */

/** State of one (exchange, symbol) in one partition. */
typedef struct iv_key {
    uint64_t hash;
    uint32_t sym;  /* its symbol's index in the partition */
    uint32_t next; /* next key of the same symbol; free-list link when unused */
    bool in_use;
    bool dirty;
    bool silent; /* a feed_silence event was emitted; feed_resumed pending */
    uint8_t exch_len;
    char exch[IV_EXCH_MAX];
    /* recency, among the keys of its exchange in the partition (iv_part.exchs[xk]) */
    uint32_t xk;
    uint32_t older, newer; /* neighbours in that recency list; IV_NONE at the ends */
    uint64_t seen;         /* iv_part.seen_clock when a trade last reached the key */

    /* sequence: timestamps */
    bool has_ts;         /* last_ts comes from an accepted tick */
    bool last_ts_had_id; /* the tick that set last_ts had a trade id */
    int64_t last_ts;     /* ms; before has_ts: the first tick's, for idle time only */
    /* sequence: trade ids */
    bool has_id;
    bool last_id_numeric;
    uint8_t recent_n;        /* entries of recent[] in use */
    uint8_t recent_pos;      /* next slot to overwrite */
    uint16_t recent_numeric; /* bit i: recent[i] is a numeric id (else a string's hash) */
    uint64_t last_id;
    uint64_t recent[IV_RECENT_IDS];

    /* price */
    bool has_ref;
    bool has_pending;
    int64_t ref_ts; /* ms: timestamp of the last accepted price */
    double ref;     /* last accepted price */
    double ema;     /* EMA of accepted prices */
    double pending; /* an unconfirmed new level */
    int64_t pending_count;
    int64_t pending_ts;
    bool has_level;   /* a new level was confirmed on this key ... */
    int64_t level_ts; /* ... at this time (ms): its peers get a window to follow */

    /* volume */
    iv_volstat vol;
} iv_key;

/** State of one symbol in one partition. */
typedef struct iv_sym {
    uint64_t hash;
    uint32_t first_key; /* list of its keys through iv_key.next; IV_NONE: none */
    uint32_t n_keys;
    uint32_t next_free; /* free-list link when unused */
    bool in_use;
    bool dirty;
    bool has_wm;
    uint8_t name_len;
    char name[IV_SYM_MAX];
    int64_t wm;       /* ms: the symbol's event-time watermark */
    int64_t scan_sec; /* wm / 1000 at the last feed-silence scan */
    int64_t fut_n;    /* ticks in the current run ahead of the watermark */
    int64_t fut_max;  /* the newest tick of that run */
    double gap_max;   /* ms: the longest recent watermark advance, decaying; 0: none yet */
} iv_sym;

typedef struct iv_slot {
    uint32_t idx; /* IV_NONE: empty */
    uint32_t h32; /* high bits of the hash, checked before touching the record */
} iv_slot;

typedef struct iv_map {
    iv_slot *slots;
    uint32_t mask; /* capacity - 1; capacity a power of two */
    uint32_t n;
} iv_map;

/** The keys of one exchange in one partition, least recently seen first. */
typedef struct iv_exch_keys {
    char name[IV_EXCH_MAX];
    uint8_t len;
    uint32_t n_keys;
    uint32_t oldest, newest; /* IV_NONE: no keys */
} iv_exch_keys;

/** A partition's state. */
typedef struct iv_part {
    hm_hash_key hkey; /* the maps' hash key (its iv_state's) */
    iv_key *keys;
    uint32_t keys_len, keys_cap, key_free; /* slab: used prefix, capacity, free list */
    iv_sym *syms;
    uint32_t syms_len, syms_cap, sym_free;
    iv_map key_map, sym_map;
    uint32_t n_keys, n_syms; /* live ones */

    /* Each exchange that has had a key here, in order of its first key (entries stay
     * when their keys go: a handful, the configured exchanges). */
    iv_exch_keys *exchs;
    uint32_t n_exchs, exchs_cap;
    uint64_t seen_clock;   /* the last iv_key.seen handed out (a count of trades, not time) */
    bool recency_unsorted; /* keys were restored in log order: sort before choosing a victim */

    uint32_t *dirty_keys; /* indices, each pushed once per dirty period */
    uint32_t n_dirty_keys, dirty_keys_cap;
    uint32_t *dirty_syms;
    uint32_t n_dirty_syms, dirty_syms_cap;
    hm_buf tombstones; /* changelog keys of dropped state: [u32 len][bytes] ... */
    uint32_t n_tombstones;
} iv_part;

/** Every partition's state. */
typedef struct iv_state {
    iv_part **parts; /* by partition id; NULL: none */
    size_t n_parts;
    hm_hash_key hkey; /* copied into each partition it creates; set before the first */
} iv_state;

void iv_state_free(iv_state *s);
/** @brief The partition's state; created when create (else NULL if it has none). */
iv_part *iv_state_part(iv_state *s, int32_t partition, bool create);
/** @brief Forget a partition entirely (no tombstones). */
void iv_state_drop_part(iv_state *s, int32_t partition);

/**
 * @brief The map hash of a key (lower-cased exchange and symbol) or a symbol: keyed
 * with p->hkey, so it differs from process to process and is never persisted.
 */
uint64_t iv_key_hash(const iv_part *p, const char *exch, size_t exch_len, const char *sym,
                     size_t sym_len);
uint64_t iv_sym_hash(const iv_part *p, const char *sym, size_t sym_len);

/** How far entries of a map sit from their home slot (a lookup of one probes dist + 1 slots). */
typedef struct iv_probe_stats {
    uint32_t n;        /* entries */
    uint64_t sum_dist; /* sum over entries of the distance from the home slot */
    uint32_t max_dist;
} iv_probe_stats;

/** @brief Probe distances of the partition's key map and symbol map. */
void iv_part_probe_stats(const iv_part *p, iv_probe_stats *keys, iv_probe_stats *syms);

uint32_t iv_part_find_key(const iv_part *p, uint64_t h, const char *exch, size_t exch_len,
                          const char *sym, size_t sym_len);
uint32_t iv_part_find_sym(const iv_part *p, uint64_t h, const char *sym, size_t sym_len);
/** @brief A new symbol (must not exist): no watermark, no keys. */
uint32_t iv_part_add_sym(iv_part *p, uint64_t h, const char *sym, size_t sym_len);
/**
 * @brief A new key of symbol si (must not exist), with empty state, the most recently
 * seen of its exchange (its seen is the current clock: iv_part_touch_key() moves it on).
 */
uint32_t iv_part_add_key(iv_part *p, uint64_t h, uint32_t si, const char *exch, size_t exch_len);

/** @brief A trade reached the key: it becomes the most recently seen of its exchange. */
void iv_part_touch_key(iv_part *p, uint32_t ki);

/**
 * @brief The key to evict for a new key of exchange exch when the partition is full: the
 * least recently seen key of the exchange holding the most keys. When several hold that
 * many, the new key's own exchange if it is one of them, else the one whose least
 * recently seen key is the oldest (then the exchange name, so that an engine restored
 * from the changelog, whose tables are in another order, chooses the same). So an
 * exchange loses keys to another's new ones only while it holds at least as many as any
 * other: one that holds fewer than max_keys / (exchanges) never does. IV_NONE: no keys.
 */
uint32_t iv_part_eviction_victim(iv_part *p, const char *exch, size_t exch_len);
/** @brief Reset a key's check state to new (identity and links kept). */
void iv_key_reset(iv_key *k);

/** @brief Drop a key (and queue its tombstone when tombstone). Its symbol stays. */
void iv_part_drop_key(iv_part *p, uint32_t ki, bool tombstone);
/** @brief Drop a symbol without keys (and queue its tombstone). */
void iv_part_drop_sym(iv_part *p, uint32_t si, bool tombstone);

/* Dirty marking: each record is pushed onto its partition's dirty list once. */
void iv_part_push_dirty_key_(iv_part *p, uint32_t ki);
void iv_part_push_dirty_sym_(iv_part *p, uint32_t si);

static inline void iv_part_mark_key(iv_part *p, uint32_t ki) {
    if (!p->keys[ki].dirty) iv_part_push_dirty_key_(p, ki);
}
static inline void iv_part_mark_sym(iv_part *p, uint32_t si) {
    if (!p->syms[si].dirty) iv_part_push_dirty_sym_(p, si);
}

/** Receives one changelog record (val NULL: tombstone). */
typedef void (*iv_state_emit_fn)(void *ud, int32_t partition, const char *key, size_t key_len,
                                 const char *val, size_t val_len);

/**
 * @brief Emit the partition's tombstones, then every dirty symbol and key, and
 * clear the dirty marks. scratch is a work buffer.
 */
void iv_part_flush(iv_part *p, int32_t partition, hm_buf *scratch, iv_state_emit_fn fn, void *ud);
/** @brief Forget dirty marks and tombstones without emitting. */
void iv_part_clear_dirty(iv_part *p);

/** @brief The changelog key of a key ("<exchange>|<symbol>") or symbol ("|<symbol>"). */
void iv_key_changelog_key(const iv_part *p, const iv_key *k, hm_buf *out);
void iv_sym_changelog_key(const iv_sym *s, hm_buf *out);
/** @brief The changelog value of a key or symbol (a JSON object with "v":1). */
void iv_key_serialise(const iv_key *k, hm_buf *out);
void iv_sym_serialise(const iv_sym *s, hm_buf *out);

/**
 * @brief Apply one changelog record to a partition (val NULL: tombstone).
 * @return 0, or -EINVAL with err naming the key and the problem.
 */
int iv_part_restore(iv_part *p, const char *key, size_t key_len, const char *val, size_t val_len,
                    hm_err *err) HM_MUST_CHECK;

#endif
