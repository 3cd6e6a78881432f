/* Book levels from their JSON text: the per-level hot path of every depth diff, in C.
 *
 * A venue's diff carries its changed levels as ``[["price","size"], ...]`` (Binance, the sim).
 * Decoding that through msgspec into strings, then looking each string up in a DecimalCache and
 * building a BookLevel, allocates and frees four objects per level before the one we keep, and
 * that object traffic is most of a diff's cost in CPython (docs/streaming.md). This module reads
 * the text in place instead: each price and size is looked up by its bytes in a small open
 * addressing table of the Decimals already built, and only a BookLevel is allocated.
 *
 * The pure-Python decoder (tickloop.venues.levels.PureLevelDecoder) stays the reference and the
 * general path: any text this scanner does not take as the plain shape (escapes, non-ASCII, a
 * number where a string belongs, a stray comma, anything else) is handed to it whole, so the
 * result, or the error, is the pure decoder's. A string seen for the first time goes through the
 * DecimalCache (its ``__missing__`` builds and validates the Decimal) before it is remembered
 * here. The table is bounded: when ``max_entries`` strings are remembered it is emptied.
 *
 * What it promises: a string that fits a slot (KEY_MAX bytes) is in the table right after its
 * lookup, whatever the seed. A string is looked for in the PROBE_MAX slots from the one it
 * hashes to (linear probing, no deletions) and stored in the first empty one; when all of them
 * are taken, it replaces the string in the slot it hashes to, which is then looked up through
 * the DecimalCache again the next time it is seen (``evictions`` counts them, and the strings a
 * rehash could not place when the table grew, so ``entries + evictions`` is the number of strings
 * ever stored). Replacing in place keeps every other string's probe sequence intact.
 *
 * It is laid out for the memory, which is what a lookup costs once nothing is built: 32-byte slots,
 * one cache line a probe, and a diff's pairs scanned (their slots prefetched) before any lookup.
 *
 * Two checks cost nothing on that path: a side with more than ``max_levels`` levels
 * (limits.max_levels_per_message) is refused as soon as the level after the bound is read, and a
 * level whose price is zero is refused from the price's bytes (its first digit, for nearly every
 * price). Both hand the text to the pure decoder, which raises the error the caller sees.
 *
 * The module also holds ``duplicate_keys``, the hot path's check that no object of a frame gives
 * a key twice (JSON decoders, msgspec's too, keep the last value silently): one pass over the
 * bytes, see its comment below.
 *
 * SOURCE_DIGEST (the SHA-256 of this file, given by the build as a -D define) lets the Python
 * side refuse a copy built from other source (tickloop/_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef TICKLOOP_SOURCE_DIGEST
#define TICKLOOP_SOURCE_DIGEST ""
#endif

/* Strings longer than this are looked up through the DecimalCache every time (rare from a
   venue: prices and sizes are mostly 8 to 16 characters). */
#define KEY_MAX 24
/* Most slots a lookup or an insert probes (a remembered string is always found within it;
   an insert into a full window replaces the string in its first slot). */
#define PROBE_MAX 32
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)(address))
#endif

/* Levels kept on the stack before spilling to the heap. */
#define STACK_LEVELS 32

/* A remembered string: its bytes zero-padded to three words (a plain string holds no NUL, so
   the padding is unambiguous and the length implied), and its Decimal. 32 bytes, so a probe
   touches one cache line: the table of a busy book is bigger than the L2 cache, and a lookup's
   cost is mostly that one memory access. */
typedef struct {
    uint64_t key[3];
    PyObject *value; /* NULL: empty slot */
} Entry;

typedef struct {
    uint64_t words[3];
} Key;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *cache;          /* the DecimalCache: builds and validates a first-seen string */
    PyTypeObject *level_type; /* BookLevel: a tuple subclass */
    PyObject *fallback;       /* the pure decoder, for any text the scanner does not take */
    Entry *table;
    Py_ssize_t mask;          /* capacity - 1; capacity is a power of two */
    Py_ssize_t used;
    Py_ssize_t max_entries;
    Py_ssize_t evictions;     /* strings replaced in a full probe window, or lost growing */
    uint64_t seed;
    Py_ssize_t fallbacks;     /* texts handed to the pure decoder */
    Py_ssize_t max_levels;    /* most levels one call returns (limits.max_levels_per_message) */
    PyObject *limit_error;    /* called with a message: the exception for max_levels */
    int untrack;              /* levels may leave the cycle collector (no __dict__) */
} LevelDecoder;

static inline Key
key_of(const char *s, Py_ssize_t n)
{
    Key k = {{0, 0, 0}};
    memcpy(k.words, s, (size_t)n); /* n <= KEY_MAX */
    return k;
}

static inline uint64_t
hash_key(const Key *k, uint64_t seed)
{
    uint64_t h = seed;
    for (int i = 0; i < 3; i++) {
        h = (h ^ k->words[i]) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    h *= 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return h;
}

static inline int
key_is(const Entry *e, const Key *k)
{
    return e->key[0] == k->words[0] && e->key[1] == k->words[1] && e->key[2] == k->words[2];
}

static void
table_clear(LevelDecoder *self)
{
    if (self->table == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i <= self->mask; i++) {
        Py_CLEAR(self->table[i].value);
    }
    self->used = 0;
}

/* Put key (not in the table) -> value into the first empty slot of its probe window, or, when
   the window is full, in place of the string in the slot it hashes to. 1 when the table holds
   one string more, 0 when one was replaced. */
static int
table_put(Entry *table, Py_ssize_t mask, uint64_t seed, const Key *k, PyObject *value)
{
    Py_ssize_t home = (Py_ssize_t)(hash_key(k, seed) & (uint64_t)mask);
    Py_ssize_t i = home;
    for (int probe = 0; probe < PROBE_MAX; probe++) {
        Entry *e = &table[i];
        if (e->value == NULL) {
            memcpy(e->key, k->words, sizeof(e->key));
            Py_INCREF(value);
            e->value = value;
            return 1;
        }
        i = (i + 1) & mask;
    }
    Entry *e = &table[home];
    PyObject *old = e->value;
    memcpy(e->key, k->words, sizeof(e->key));
    Py_INCREF(value);
    e->value = value;
    Py_DECREF(old); /* last: the table is consistent if this runs code */
    return 0;
}

/* Double the table (up to what max_entries needs); on failure keep the old one. */
static void
table_grow(LevelDecoder *self)
{
    Py_ssize_t capacity = (self->mask + 1) * 2;
    Entry *bigger = PyMem_Calloc((size_t)capacity, sizeof(Entry));
    if (bigger == NULL) {
        return; /* not an error: the table just stays fuller */
    }
    Py_ssize_t used = 0, moved = 0;
    for (Py_ssize_t i = 0; i <= self->mask; i++) {
        Entry *e = &self->table[i];
        if (e->value != NULL) {
            Key k;
            memcpy(k.words, e->key, sizeof(k.words));
            used += table_put(bigger, capacity - 1, self->seed, &k, e->value);
            moved++;
            Py_DECREF(e->value);
        }
    }
    self->evictions += moved - used;
    PyMem_Free(self->table);
    self->table = bigger;
    self->mask = capacity - 1;
    self->used = used;
}

/* A price or size found in the text: where it is and, when short enough for the table, its key
   and hash (computed while scanning, when the slot it hashes to is also prefetched). */
typedef struct {
    const char *s;
    Py_ssize_t n;
    uint64_t hash;
    Key key;
} Text;

static inline void
text_prepare(LevelDecoder *self, Text *t, const char *s, Py_ssize_t n)
{
    t->s = s;
    t->n = n;
    if (n <= KEY_MAX) {
        t->key = key_of(s, n);
        t->hash = hash_key(&t->key, self->seed);
        PREFETCH(&self->table[t->hash & (uint64_t)self->mask]);
    }
}

/* A new reference to the Decimal for the text, or NULL with an exception set. */
static PyObject *
lookup(LevelDecoder *self, const Text *t)
{
    const char *s = t->s;
    Py_ssize_t n = t->n;
    if (n <= KEY_MAX) {
        Py_ssize_t i = (Py_ssize_t)(t->hash & (uint64_t)self->mask);
        for (int probe = 0; probe < PROBE_MAX; probe++) {
            Entry *e = &self->table[i];
            if (e->value == NULL) {
                break;
            }
            if (key_is(e, &t->key)) {
                Py_INCREF(e->value);
                return e->value;
            }
            i = (i + 1) & self->mask;
        }
    }
    PyObject *text = PyUnicode_DecodeASCII(s, n, NULL);
    if (text == NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GetItem(self->cache, text); /* __missing__ builds + validates */
    Py_DECREF(text);
    if (value == NULL || n > KEY_MAX) {
        return value;
    }
    /* The cache may have run Python code: read the table afresh. */
    if (self->used >= self->max_entries) {
        table_clear(self);
    }
    else if (2 * (self->used + 1) > self->mask + 1) {
        table_grow(self);
    }
    if (table_put(self->table, self->mask, self->seed, &t->key, value)) {
        self->used++;
    }
    else {
        self->evictions++;
    }
    return value;
}

static inline const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }
    return p;
}

/* A JSON string of printable ASCII without escapes at p: sets (s, n), returns the position after
   its closing quote; NULL for anything else (the pure decoder then reads the whole text). */
static inline const char *
scan_string(const char *p, const char *end, const char **s, Py_ssize_t *n)
{
    if (p >= end || *p != '"') {
        return NULL;
    }
    const char *start = ++p;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *s = start;
            *n = p - start;
            return p + 1;
        }
        if (c == '\\' || c < 0x20 || c >= 0x80) {
            return NULL;
        }
        p++;
    }
    return NULL;
}

/* One pair member at p (after optional whitespace): a plain string, then whitespace and the
   character ``after``; returns the position after that character, NULL for anything else. */
static inline const char *
scan_member(const char *p, const char *end, const char **s, Py_ssize_t *n, char after)
{
    p = scan_string(skip_ws(p, end), end, s, n);
    if (p == NULL) {
        return NULL;
    }
    p = skip_ws(p, end);
    if (p >= end || *p != after) {
        return NULL;
    }
    return p + 1;
}

typedef struct {
    PyObject **items;
    Py_ssize_t count;
    Py_ssize_t capacity;
    PyObject *stack[STACK_LEVELS];
} Levels;

static void
levels_release(Levels *levels)
{
    for (Py_ssize_t i = 0; i < levels->count; i++) {
        Py_DECREF(levels->items[i]);
    }
    if (levels->items != levels->stack) {
        PyMem_Free(levels->items);
    }
}

static int
levels_append(Levels *levels, PyObject *level)
{
    if (levels->count == levels->capacity) {
        Py_ssize_t capacity = levels->capacity * 2;
        PyObject **items;
        if (levels->items == levels->stack) {
            items = PyMem_Malloc((size_t)capacity * sizeof(PyObject *));
            if (items != NULL) {
                memcpy(items, levels->stack, (size_t)levels->count * sizeof(PyObject *));
            }
        }
        else {
            items = PyMem_Realloc(levels->items, (size_t)capacity * sizeof(PyObject *));
        }
        if (items == NULL) {
            Py_DECREF(level);
            PyErr_NoMemory();
            return -1;
        }
        levels->items = items;
        levels->capacity = capacity;
    }
    levels->items[levels->count++] = level;
    return 0;
}

/* Whether a number's text (valid: the cache checked it) is zero: no digit 1-9 before its
   exponent. A price's first digit settles it unless it is a 0 ("0.05"). */
static inline int
text_is_zero(const Text *t)
{
    for (Py_ssize_t i = 0; i < t->n; i++) {
        char c = t->s[i];
        if (c >= '1' && c <= '9') {
            return 0;
        }
        if (c == 'e' || c == 'E') {
            break;
        }
    }
    return 1;
}

/* One level from its two texts, appended to levels: 0; -1 with an exception set; -2 with the
   max_levels exception set (final: not handed to the pure decoder). */
static int
add_level(LevelDecoder *self, const Text *price_text, const Text *size_text, Levels *levels)
{
    if (levels->count >= self->max_levels) {
        /* Final: the pure decoder is not asked (it would decode the whole hostile side first). */
        PyObject *error = PyObject_CallFunction(
            self->limit_error, "s", "more levels on one side than limits.max_levels_per_message");
        if (error != NULL) {
            if (PyExceptionInstance_Check(error)) {
                PyErr_SetObject((PyObject *)Py_TYPE(error), error);
            }
            else {
                PyErr_SetString(PyExc_TypeError, "limit_error must return an exception");
            }
            Py_DECREF(error);
        }
        return -2;
    }
    PyObject *price = lookup(self, price_text);
    if (price == NULL) {
        return -1;
    }
    if (text_is_zero(price_text)) {
        Py_DECREF(price);
        PyErr_SetString(PyExc_ValueError, "a book level's price must be > 0");
        return -1;
    }
    PyObject *size = lookup(self, size_text);
    if (size == NULL) {
        Py_DECREF(price);
        return -1;
    }
    PyTypeObject *level_type = self->level_type;
    PyObject *level = level_type->tp_alloc(level_type, 2);
    if (level == NULL) {
        Py_DECREF(price);
        Py_DECREF(size);
        return -1;
    }
    PyTuple_SET_ITEM(level, 0, price);
    PyTuple_SET_ITEM(level, 1, size);
    if (self->untrack && !PyObject_IS_GC(price) && !PyObject_IS_GC(size)) {
        /* A level of two Decimals can never be part of a reference cycle. CPython lets its
           cycle collector drop plain tuples like this, but never tuple subclasses, so every
           collection would walk each level a consumer still holds. */
        PyObject_GC_UnTrack(level);
    }
    return levels_append(levels, level);
}

/* Scan [["p","q"], ...]: 1 when it was the plain shape (levels filled), 0 when it was not (the
   pure decoder decides), -1 with an exception set (the cache refused a number, a zero price,
   memory; the caller hands the text to the pure decoder, which also checks the rest of its
   shape), -2 with the max_levels exception set (the caller raises it).

   Levels are read CHUNK pairs at a time: the pairs are scanned first, prefetching the table
   slot of each string, and only then looked up, so the memory accesses of a diff's few lookups
   overlap instead of waiting on each other. */
#define CHUNK 8

static int
scan_levels(LevelDecoder *self, const char *p, const char *end, Levels *levels)
{
    p = skip_ws(p, end);
    if (p >= end || *p != '[') {
        return 0;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        return skip_ws(p + 1, end) == end;
    }
    for (;;) {
        Text texts[2 * CHUNK];
        int count = 0;
        int last = 0;
        while (count < 2 * CHUNK) {
            const char *s;
            Py_ssize_t n;
            if (p >= end || *p != '[') {
                return 0;
            }
            p = scan_member(p + 1, end, &s, &n, ',');
            if (p == NULL) {
                return 0;
            }
            text_prepare(self, &texts[count++], s, n);
            p = scan_member(p, end, &s, &n, ']');
            if (p == NULL) {
                return 0;
            }
            text_prepare(self, &texts[count++], s, n);
            p = skip_ws(p, end);
            if (p < end && *p == ']') {
                last = 1;
                break;
            }
            if (p >= end || *p != ',') {
                return 0;
            }
            p = skip_ws(p + 1, end);
        }
        for (int i = 0; i < count; i += 2) {
            int added = add_level(self, &texts[i], &texts[i + 1], levels);
            if (added < 0) {
                return added;
            }
        }
        if (last) {
            return skip_ws(p + 1, end) == end;
        }
    }
}

static PyObject *
LevelDecoder_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    LevelDecoder *self = (LevelDecoder *)op;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "LevelDecoder takes one argument: the levels' JSON text");
        return NULL;
    }
    PyObject *text = args[0];
    Py_buffer view;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Levels levels;
    levels.items = levels.stack;
    levels.count = 0;
    levels.capacity = STACK_LEVELS;
    const char *start = (const char *)view.buf;
    int shape = scan_levels(self, start, start + view.len, &levels);
    PyBuffer_Release(&view);
    if (shape != 1) {
        levels_release(&levels);
        if (shape == -2) {
            return NULL;
        }
        if (shape < 0) {
            /* A number the cache refused (or no memory), seen before the whole text was read:
               the pure decoder checks the text's shape first, so which error the caller sees
               is its call. Interrupts and other non-Exception errors pass through. */
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                return NULL;
            }
            PyErr_Clear();
        }
        self->fallbacks++;
        return PyObject_CallOneArg(self->fallback, text);
    }
    PyObject *result = PyTuple_New(levels.count);
    if (result == NULL) {
        levels_release(&levels);
        return NULL;
    }
    int tracked = 0;
    for (Py_ssize_t i = 0; i < levels.count; i++) {
        tracked |= PyObject_GC_IsTracked(levels.items[i]);
        PyTuple_SET_ITEM(result, i, levels.items[i]); /* steals the reference */
    }
    if (!tracked) {
        /* CPython would never drop this tuple from its collector: it holds tuple subclasses. */
        PyObject_GC_UnTrack(result);
    }
    levels.count = 0;
    levels_release(&levels);
    return result;
}

static PyObject *
LevelDecoder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"cache", "level_type",  "fallback", "max_entries", "seed",
                               "max_levels", "limit_error", NULL};
    PyObject *cache, *level_type, *fallback;
    PyObject *limit_error = PyExc_ValueError;
    Py_ssize_t max_entries = 65536;
    unsigned long long seed = 0;
    Py_ssize_t max_levels = PY_SSIZE_T_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|nKnO:LevelDecoder", keywords, &cache,
                                     &level_type, &fallback, &max_entries, &seed, &max_levels,
                                     &limit_error)) {
        return NULL;
    }
    if (max_levels < 1) {
        PyErr_SetString(PyExc_ValueError, "max_levels must be >= 1");
        return NULL;
    }
    if (!PyCallable_Check(limit_error)) {
        PyErr_SetString(PyExc_TypeError, "limit_error must be callable");
        return NULL;
    }
    if (!PyType_Check(level_type) ||
        !PyType_IsSubtype((PyTypeObject *)level_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "level_type must be a tuple subclass");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    if (max_entries < 1 || max_entries > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "max_entries must be between 1 and 16777216");
        return NULL;
    }
    LevelDecoder *self = (LevelDecoder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = LevelDecoder_vectorcall;
    self->untrack = ((PyTypeObject *)level_type)->tp_dictoffset == 0;
    self->table = PyMem_Calloc(256, sizeof(Entry));
    if (self->table == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->mask = 255;
    self->max_entries = max_entries;
    self->max_levels = max_levels;
    /* The caller draws the seed (tickloop.venues.levels: a random one per decoder, so which
       strings collide is not predictable from outside; tests pass fixed ones to be repeatable). */
    self->seed = (uint64_t)seed;
    Py_INCREF(cache);
    self->cache = cache;
    Py_INCREF(level_type);
    self->level_type = (PyTypeObject *)level_type;
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(limit_error);
    self->limit_error = limit_error;
    return (PyObject *)self;
}

static int
LevelDecoder_traverse(LevelDecoder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cache);
    Py_VISIT(self->level_type);
    Py_VISIT(self->fallback);
    Py_VISIT(self->limit_error);
    return 0;
}

static int
LevelDecoder_clear(LevelDecoder *self)
{
    Py_CLEAR(self->cache);
    Py_CLEAR(self->level_type);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->limit_error);
    return 0;
}

static void
LevelDecoder_dealloc(LevelDecoder *self)
{
    PyObject_GC_UnTrack(self);
    LevelDecoder_clear(self);
    table_clear(self);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
LevelDecoder_forget(LevelDecoder *self, PyObject *Py_UNUSED(ignored))
{
    table_clear(self);
    Py_RETURN_NONE;
}

static PyObject *
LevelDecoder_get_entries(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->used);
}

static PyObject *
LevelDecoder_get_capacity(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->mask + 1);
}

static PyObject *
LevelDecoder_get_max_entries(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->max_entries);
}

static PyObject *
LevelDecoder_get_evictions(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->evictions);
}

static PyObject *
LevelDecoder_get_fallbacks(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->fallbacks);
}

static PyObject *
LevelDecoder_get_max_levels(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->max_levels);
}

static PyObject *
LevelDecoder_get_cache(LevelDecoder *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->cache);
}

static PyMethodDef LevelDecoder_methods[] = {
    {"forget", (PyCFunction)LevelDecoder_forget, METH_NOARGS,
     "Empty the table of remembered strings (the DecimalCache is left alone)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef LevelDecoder_getset[] = {
    {"entries", (getter)LevelDecoder_get_entries, NULL, "strings remembered", NULL},
    {"capacity", (getter)LevelDecoder_get_capacity, NULL, "slots in the table", NULL},
    {"max_entries", (getter)LevelDecoder_get_max_entries, NULL, "bound on entries", NULL},
    {"evictions", (getter)LevelDecoder_get_evictions, NULL,
     "strings replaced in a full probe window (or not placed when the table grew)", NULL},
    {"fallbacks", (getter)LevelDecoder_get_fallbacks, NULL,
     "texts handed to the pure decoder", NULL},
    {"max_levels", (getter)LevelDecoder_get_max_levels, NULL, "most levels one call returns",
     NULL},
    {"cache", (getter)LevelDecoder_get_cache, NULL, "the DecimalCache", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LevelDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tickloop.venues._levels_native.LevelDecoder",
    .tp_doc = "LevelDecoder(cache, level_type, fallback, max_entries=65536, seed=0, "
              "max_levels=sys.maxsize, limit_error=ValueError)\n\n"
              "Call it with the JSON text of [[price, size], ...] for a tuple of levels.",
    .tp_basicsize = sizeof(LevelDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(LevelDecoder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = LevelDecoder_new,
    .tp_traverse = (traverseproc)LevelDecoder_traverse,
    .tp_clear = (inquiry)LevelDecoder_clear,
    .tp_dealloc = (destructor)LevelDecoder_dealloc,
    .tp_methods = LevelDecoder_methods,
    .tp_getset = LevelDecoder_getset,
};

/* ------------------------------------------------------------------ duplicate keys of a frame
 *
 * duplicate_keys(text) -> 0, 1 or 2. JSON leaves a key given twice in one object undefined and
 * every decoder tickloop uses (msgspec) keeps the last value, so a venue (or a man in the
 * middle of a plain-text replay) could send {"p":"100.5","p":"0.0001"} and have the second
 * price believed while a log or a checksum shows the first. A second parse of every frame to
 * find out would double the decode cost; this is one pass over the bytes instead:
 *
 *   0  no object of the text gives a key twice (keys compared by their bytes);
 *   1  one does;
 *   2  this scan cannot tell: a key written with an escape ("\u0070" is "p"), nesting deeper
 *      than DUP_DEPTH, an object with more than DUP_KEYS keys, or text that is not JSON. The
 *      caller then asks the exact (and slower) Python check, tickloop.venues.keys.
 *
 * Keys of the objects still open are kept in one array, the innermost object's last; closing an
 * object drops its keys, so the keys a new key is compared with are always the array's top
 * segment. Each open object keeps a 64-bit filter of its keys: a key whose bit is clear is new
 * at once; otherwise it is compared by length, its first eight bytes, then the rest, with the
 * object's keys. An object with more than DUP_KEYS keys (never sent by a venue) is left to the
 * exact check, which bounds the work at O(DUP_KEYS) a key. Strings are skipped eight bytes at a
 * time. It reads nothing outside [text, text + len) whatever the bytes.
 */
#define DUP_DEPTH 32
#define DUP_KEYS 64
#define DUP_OPEN 512 /* keys of all the open objects together */

typedef struct {
    const char *s;
    Py_ssize_t n;
    uint64_t head; /* first eight bytes, zero-padded */
} DupKey;

/* An open container: where its keys start in keys[] (-1 for an array), and a 64-bit filter
   of the keys it holds (one bit a key, from its first bytes and length): a key whose bit is not
   set is new without comparing it with any other, so a venue's object of ten or twenty keys
   costs a few comparisons, not a hundred. */
typedef struct {
    Py_ssize_t first;
    uint64_t seen;
} DupOpen;

/* 1 for the bytes that end a run of plain characters outside a string. */
static const unsigned char dup_special[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
};

/* The first eight bytes of a key (n of them when shorter, the rest zero). One unaligned load
   when eight bytes can be read (a key is followed by at least its quote and colon), instead of
   a memcpy of a variable length, which is a call to the C library. */
static inline uint64_t
dup_head(const char *s, Py_ssize_t n, const char *end)
{
    uint64_t h = 0;
    if (end - s >= 8) {
        memcpy(&h, s, 8);
        if (n < 8) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            h &= n ? ~0ULL << (8 * (8 - n)) : 0;
#else
            h &= (1ULL << (8 * n)) - 1;
#endif
        }
        return h;
    }
    unsigned char *bytes = (unsigned char *)&h;
    for (Py_ssize_t i = 0; i < n && i < 8; i++) {
        bytes[i] = (unsigned char)s[i];
    }
    return h;
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DUP_LITTLE_ENDIAN 1
#else
#define DUP_LITTLE_ENDIAN 0
#endif
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether one of the eight bytes of w is a quote or a backslash (the classic "has a zero byte"
   test on w xor each of them). */
static inline uint64_t
quote_or_backslash(uint64_t w)
{
    uint64_t q = w ^ (ONES * (uint64_t)'"');
    uint64_t b = w ^ (ONES * (uint64_t)'\\');
    return ((q - ONES) & ~q & HIGHS) | ((b - ONES) & ~b & HIGHS);
}

static int
scan_duplicates(const char *p, const char *end)
{
    DupKey keys[DUP_OPEN];
    Py_ssize_t nkeys = 0;
    DupOpen open[DUP_DEPTH];
    int depth = 0;
    while (p < end) {
        while (p < end && !dup_special[(unsigned char)*p]) {
            p++;
        }
        if (p >= end) {
            break;
        }
        char c = *p++;
        if (c == '{' || c == '[') {
            if (depth == DUP_DEPTH) {
                return 2;
            }
            open[depth].first = c == '{' ? nkeys : -1;
            open[depth].seen = 0;
            depth++;
            continue;
        }
        if (c == '}' || c == ']') {
            if (depth == 0) {
                return 2;
            }
            Py_ssize_t first = open[--depth].first;
            if (first >= 0) {
                nkeys = first;
            }
            continue;
        }
        /* a string: find its end eight bytes at a time, noting escapes */
        const char *s = p;
        int escaped = 0;
        for (;;) {
            while (end - p >= 8) {
                uint64_t w;
                memcpy(&w, p, 8);
                uint64_t found = quote_or_backslash(w);
                if (found) {
#if DUP_LITTLE_ENDIAN
                    /* the lowest flag is exact (a borrow only ever flags bytes above it) */
                    p += __builtin_ctzll(found) >> 3;
#endif
                    break;
                }
                p += 8;
            }
            while (p < end && *p != '"' && *p != '\\') {
                p++;
            }
            if (p < end && *p == '\\') {
                escaped = 1;
                p += 2; /* the escaped character, whatever it is */
                continue;
            }
            break;
        }
        if (p >= end) {
            return 2;
        }
        Py_ssize_t n = p - s;
        p++;
        const char *q = p;
        if (q < end && *q != ':') {
            while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) {
                q++;
            }
        }
        if (q >= end || *q != ':') {
            continue; /* a value */
        }
        p = q + 1;
        if (depth == 0 || open[depth - 1].first < 0 || escaped) {
            return 2;
        }
        DupOpen *object = &open[depth - 1];
        Py_ssize_t first = object->first;
        if (nkeys - first >= DUP_KEYS || nkeys == DUP_OPEN) {
            return 2;
        }
        uint64_t head = dup_head(s, n, end);
        uint64_t bit = 1ULL << (((head ^ (uint64_t)n) * 0x9E3779B97F4A7C15ULL) >> 58);
        if (object->seen & bit) {
            for (Py_ssize_t i = first; i < nkeys; i++) {
                const DupKey *k = &keys[i];
                if (k->head == head && k->n == n &&
                    (n <= 8 || memcmp(k->s + 8, s + 8, (size_t)(n - 8)) == 0)) {
                    return 1;
                }
            }
        }
        object->seen |= bit;
        keys[nkeys].s = s;
        keys[nkeys].n = n;
        keys[nkeys].head = head;
        nkeys++;
    }
    return depth == 0 ? 0 : 2;
}

#if defined(__SSE2__) && DUP_LITTLE_ENDIAN
#include <emmintrin.h>
#define DUP_BLOCKS 1

/* Bit i of the result: byte i of the 64-byte block equals c. */
static inline uint64_t
block_eq(const __m128i v[4], __m128i c)
{
    uint64_t m0 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v[0], c));
    uint64_t m1 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v[1], c));
    uint64_t m2 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v[2], c));
    uint64_t m3 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v[3], c));
    return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
}

/* The fast path of the common case, a frame without a backslash written without spaces
   between a key and its colon: 64 bytes at a time, bit masks of the quotes, brackets and colons
   (SSE2, in every x86-64), which bytes are inside strings (a prefix xor of the quotes), then only
   the brackets and colons outside strings are visited, in order. Answers as scan_duplicates, or
   3 when the frame is not of that shape (a backslash, a space before a colon, a bracket that
   does not match): scan_duplicates then reads it byte by byte. */
static int
scan_blocks(const char *text, Py_ssize_t len)
{
    DupKey keys[DUP_OPEN];
    Py_ssize_t nkeys = 0;
    DupOpen open[DUP_DEPTH];
    int depth = 0;
    uint64_t inside = 0;       /* all ones when the block starts inside a string */
    Py_ssize_t opening = -1;   /* where the last string opened before this block */
    const __m128i quote = _mm_set1_epi8('"'), colon = _mm_set1_epi8(':');
    const __m128i backslash = _mm_set1_epi8('\\'), lbrace = _mm_set1_epi8('{');
    const __m128i rbrace = _mm_set1_epi8('}'), fold = _mm_set1_epi8(0x20);
    for (Py_ssize_t base = 0; base < len; base += 64) {
        __m128i v[4];
        if (len - base >= 64) {
            for (int i = 0; i < 4; i++) {
                v[i] = _mm_loadu_si128((const __m128i *)(text + base + 16 * i));
            }
        }
        else {
            char tail[64] = {0}; /* NUL matches nothing looked for */
            memcpy(tail, text + base, (size_t)(len - base));
            for (int i = 0; i < 4; i++) {
                v[i] = _mm_loadu_si128((const __m128i *)(tail + 16 * i));
            }
        }
        if (block_eq(v, backslash)) {
            return 3;
        }
        uint64_t quotes = block_eq(v, quote);
        uint64_t strings = quotes; /* prefix xor: bit i set inside a string (its opening quote
                                      included, its closing quote not) */
        strings ^= strings << 1;
        strings ^= strings << 2;
        strings ^= strings << 4;
        strings ^= strings << 8;
        strings ^= strings << 16;
        strings ^= strings << 32;
        strings ^= inside;
        __m128i folded[4]; /* '[' -> '{', ']' -> '}' */
        for (int i = 0; i < 4; i++) {
            folded[i] = _mm_or_si128(v[i], fold);
        }
        uint64_t outside = ~strings;
        uint64_t opens = block_eq(folded, lbrace) & outside;
        uint64_t closes = block_eq(folded, rbrace) & outside;
        uint64_t colons = block_eq(v, colon) & outside;
        uint64_t objects = block_eq(v, lbrace);
        uint64_t openings = quotes & strings;
        uint64_t events = opens | closes | colons;
        while (events) {
            int i = __builtin_ctzll(events);
            uint64_t bit = 1ULL << i;
            events &= events - 1;
            if (opens & bit) {
                if (depth == DUP_DEPTH) {
                    return 2;
                }
                open[depth].first = (objects & bit) ? nkeys : -1;
                open[depth].seen = 0;
                depth++;
                continue;
            }
            if (closes & bit) {
                if (depth == 0) {
                    return 3;
                }
                Py_ssize_t first = open[--depth].first;
                if (first >= 0) {
                    nkeys = first;
                }
                continue;
            }
            /* a colon: the key's closing quote must be the byte before it */
            Py_ssize_t at = base + i;
            if (at == 0 || text[at - 1] != '"' || depth == 0 || open[depth - 1].first < 0) {
                return 3;
            }
            uint64_t before = i > 1 ? openings & ((1ULL << (i - 1)) - 1) : 0;
            Py_ssize_t start = before ? base + 63 - __builtin_clzll(before) : opening;
            if (start < 0 || start >= at - 1) {
                return 3;
            }
            const char *s = text + start + 1;
            Py_ssize_t n = at - 1 - (start + 1);
            DupOpen *object = &open[depth - 1];
            Py_ssize_t first = object->first;
            if (nkeys - first >= DUP_KEYS || nkeys == DUP_OPEN) {
                return 2;
            }
            uint64_t head = dup_head(s, n, text + len);
            uint64_t flag = 1ULL << (((head ^ (uint64_t)n) * 0x9E3779B97F4A7C15ULL) >> 58);
            if (object->seen & flag) {
                for (Py_ssize_t k = first; k < nkeys; k++) {
                    const DupKey *key = &keys[k];
                    if (key->head == head && key->n == n &&
                        (n <= 8 || memcmp(key->s + 8, s + 8, (size_t)(n - 8)) == 0)) {
                        return 1;
                    }
                }
            }
            object->seen |= flag;
            keys[nkeys].s = s;
            keys[nkeys].n = n;
            keys[nkeys].head = head;
            nkeys++;
        }
        if (openings) {
            opening = base + 63 - __builtin_clzll(openings);
        }
        inside = (uint64_t)((int64_t)strings >> 63);
    }
    if (inside) {
        return 2; /* a string never closed */
    }
    return depth == 0 ? 0 : 2;
}
#else
#define DUP_BLOCKS 0
#endif

static inline int
scan_frame(const char *text, Py_ssize_t len)
{
#if DUP_BLOCKS
    int found = scan_blocks(text, len);
    if (found != 3) {
        return found;
    }
#endif
    return scan_duplicates(text, text + len);
}

#if DUP_BLOCKS && defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define COLONS_AVX2 1

/* count_colons 32 bytes at a time, for a CPU with AVX2 (chosen at run time: the build targets
   any x86-64): about half the instructions of the SSE2 loop on a 260-byte frame. */
__attribute__((target("avx2"))) static Py_ssize_t
count_colons_avx2(const char *text, Py_ssize_t len)
{
    Py_ssize_t n = 0, i = 0;
    const __m256i colon = _mm256_set1_epi8(':'), zero = _mm256_setzero_si256();
    while (len - i >= 32) {
        __m256i counts = zero;
        for (int round = 0; round < 255 && len - i >= 32; round++, i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(text + i));
            counts = _mm256_sub_epi8(counts, _mm256_cmpeq_epi8(v, colon));
        }
        __m256i sums = _mm256_sad_epu8(counts, zero);
        n += _mm256_extract_epi64(sums, 0) + _mm256_extract_epi64(sums, 1) +
             _mm256_extract_epi64(sums, 2) + _mm256_extract_epi64(sums, 3);
    }
    if (i < len && len >= 32) { /* the last 32 bytes, of which the tail's are the top bits */
        __m256i v = _mm256_loadu_si256((const __m256i *)(text + len - 32));
        uint32_t mask = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, colon));
        return n + __builtin_popcount(mask >> (32 - (len - i)));
    }
    for (; i < len; i++) {
        n += text[i] == ':';
    }
    return n;
}
#else
#define COLONS_AVX2 0
#endif

/* 1 when count_colons may use AVX2 (set at import), else 0. */
static int colons_avx2;

/* How many bytes of text are colons: 16 at a time (SSE2), each block's matches subtracted from
   byte counters (a match is -1) that are summed before any can wrap; 32 at a time with AVX2. */
static Py_ssize_t
count_colons(const char *text, Py_ssize_t len)
{
    Py_ssize_t n = 0, i = 0;
#if COLONS_AVX2
    if (colons_avx2) {
        return count_colons_avx2(text, len);
    }
#endif
#if DUP_BLOCKS
    const __m128i colon = _mm_set1_epi8(':'), zero = _mm_setzero_si128();
    while (len - i >= 16) {
        __m128i counts = zero;
        for (int round = 0; round < 255 && len - i >= 16; round++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(text + i));
            counts = _mm_sub_epi8(counts, _mm_cmpeq_epi8(v, colon));
        }
        __m128i sums = _mm_sad_epu8(counts, zero);
        n += _mm_cvtsi128_si32(sums) + _mm_extract_epi16(sums, 4);
    }
    if (i < len && len >= 16) { /* the last 16 bytes, of which the tail's are the top bits */
        __m128i v = _mm_loadu_si128((const __m128i *)(text + len - 16));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, colon));
        return n + __builtin_popcount(mask >> (16 - (len - i)));
    }
#endif
    for (; i < len; i++) {
        n += text[i] == ':';
    }
    return n;
}

static PyObject *
colons(PyObject *module, PyObject *text)
{
    if (PyBytes_CheckExact(text)) {
        return PyLong_FromSsize_t(count_colons(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text)));
    }
    Py_buffer view;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_ssize_t n = count_colons((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(n);
}

static PyObject *
duplicate_keys(PyObject *module, PyObject *text)
{
    if (PyBytes_CheckExact(text)) { /* no buffer to take and give back */
        return PyLong_FromLong(scan_frame(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text)));
    }
    Py_buffer view;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int found = scan_frame((const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(found);
}

/* Whether count_colons uses AVX2: set_colons_avx2(flag) -> the previous setting. A flag is taken
   only where the CPU has AVX2 (so tests can run both paths); elsewhere it stays off. */
static PyObject *
set_colons_avx2(PyObject *module, PyObject *flag)
{
    (void)module;
    int on = PyObject_IsTrue(flag);
    if (on < 0) {
        return NULL;
    }
    int before = colons_avx2;
#if COLONS_AVX2
    colons_avx2 = on && __builtin_cpu_supports("avx2");
#else
    (void)on;
#endif
    return PyBool_FromLong(before);
}

static PyMethodDef levels_functions[] = {
    {"set_colons_avx2", (PyCFunction)set_colons_avx2, METH_O,
     "set_colons_avx2(flag) -> bool: count colons with AVX2 (where the CPU has it); returns "
     "the previous setting."},
    {"duplicate_keys", (PyCFunction)duplicate_keys, METH_O,
     "duplicate_keys(text) -> 0 (no object gives a key twice), 1 (one does) or 2 (cannot tell "
     "here: ask tickloop.venues.keys)."},
    {"colons", (PyCFunction)colons, METH_O,
     "colons(text) -> how many bytes of text are ':' (tickloop.venues.keys.exact_keys)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef levels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tickloop.venues._levels_native",
    .m_doc = "Book levels from their JSON text (see tickloop.venues.levels), and the "
             "duplicate-key scan of a frame (tickloop.venues.keys).",
    .m_size = -1,
    .m_methods = levels_functions,
};

PyMODINIT_FUNC
PyInit__levels_native(void)
{
#if COLONS_AVX2
    __builtin_cpu_init();
    colons_avx2 = __builtin_cpu_supports("avx2");
#endif
    if (PyType_Ready(&LevelDecoderType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&levels_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LevelDecoder", (PyObject *)&LevelDecoderType) < 0 ||
        PyModule_AddStringConstant(module, "SOURCE_DIGEST", TICKLOOP_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
