/* storelab.chunking._cdc: the cut-point loops of the peer chunkers, in C for speed.
 *
 * Each function scans a buffer that starts at a chunk boundary and returns the lengths of the
 * chunks it can already decide (a Python list of ints). Bytes the lengths do not cover are handed
 * back by the caller on the next call, followed by new bytes; with eof=True the lengths cover the
 * whole buffer. A chunk is decided once its cut rule has fired, once the chunk reached its tool's
 * maximum, or at end of input: never on where a read happened to end.
 *
 * Only the loops live here. The rules' parameters, tables and their sources are in the Python
 * module of each chunker (storelab/chunking/<name>.py), which validates everything it passes in;
 * the functions below trust their arguments apart from buffer lengths.
 *
 * The GIL is released while scanning: ingest hashes files on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Py_ssize_t *items;
    Py_ssize_t count, capacity;
} Lengths;

static int lengths_push(Lengths *l, Py_ssize_t n) {
    if (l->count == l->capacity) {
        Py_ssize_t capacity = l->capacity ? 2 * l->capacity : 64;
        Py_ssize_t *items = realloc(l->items, (size_t)capacity * sizeof(Py_ssize_t));
        if (!items)
            return -1;
        l->items = items;
        l->capacity = capacity;
    }
    l->items[l->count++] = n;
    return 0;
}

/* The list of lengths (consumes l); NULL with MemoryError when the scan ran out of memory. */
static PyObject *lengths_list(Lengths *l, int failed) {
    PyObject *list = NULL;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    list = PyList_New(l->count);
    if (!list)
        goto done;
    for (Py_ssize_t i = 0; i < l->count; i++) {
        PyObject *n = PyLong_FromSsize_t(l->items[i]);
        if (!n) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, n);
    }
done:
    free(l->items);
    return list;
}

static inline uint32_t rol32(uint32_t v, unsigned shift) {
    shift &= 31;
    return shift ? (v << shift) | (v >> (32 - shift)) : v;
}

/* A table argument: exactly `count` native-endian integers of `width` bytes. */
static int get_table(PyObject *obj, Py_buffer *view, Py_ssize_t width, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != 256 * width) {
        PyErr_Format(PyExc_ValueError, "%s: a table of 256 entries of %zd bytes", what, width);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* One algorithm's cut: the length of the chunk starting at p (r bytes left), or 0 when
   undecided until more bytes come. */
typedef Py_ssize_t (*CutFn)(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof);

/* Every chunk decided in buf, the GIL released while cutting. */
static PyObject *cut_all(const Py_buffer *buf, CutFn cut, const void *ctx, int eof) {
    Lengths out = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *p = buf->buf;
    Py_ssize_t left = buf->len;
    while (left > 0) {
        Py_ssize_t n = cut(p, left, ctx, eof);
        if (n == 0)
            break;
        if (lengths_push(&out, n) < 0) {
            failed = 1;
            break;
        }
        p += n;
        left -= n;
    }
    Py_END_ALLOW_THREADS
    return lengths_list(&out, failed);
}

/* ---- casync (and desync): buzhash over 48 bytes restarted at each chunk, cut when h mod d == d - 1 ---- */

#define CASYNC_WINDOW 48

/* n mod d without a division (Lemire, Kaser & Kurz 2019: exact for every 32-bit n and d). */
static inline uint32_t fastmod_u32(uint32_t n, uint64_t magic, uint32_t d) {
    uint64_t low = magic * n;
    return (uint32_t)(((__uint128_t)low * d) >> 64);
}

typedef struct {
    Py_ssize_t min, avg, max;
    uint32_t d;
    const uint32_t *t;
} Casync;

static Py_ssize_t casync_cut(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof) {
    const Casync *c = ctx;
    Py_ssize_t min = c->min, avg = c->avg, max = c->max;
    uint32_t d = c->d;
    const uint32_t *t = c->t;
    if (min == avg && avg == max) /* casync's fixed-size chunker */
        return r >= max ? max : (eof ? r : 0);
    /* the window fills from the chunk start (or from min - 48 on: earlier bytes cannot matter)
       and is first tested when full */
    Py_ssize_t first = min > CASYNC_WINDOW ? min : CASYNC_WINDOW;
    if (r < first)
        return eof ? r : 0;
    uint64_t magic = UINT64_C(0xFFFFFFFFFFFFFFFF) / d + 1;
    const uint8_t *w = p + first - CASYNC_WINDOW;
    uint32_t h = 0;
    for (unsigned i = 1; i < CASYNC_WINDOW; i++)
        h ^= rol32(t[w[i - 1]], CASYNC_WINDOW - i);
    h ^= t[w[CASYNC_WINDOW - 1]];
    Py_ssize_t len = first;
    for (;;) {
        if (len >= max || fastmod_u32(h, magic, d) == d - 1)
            return len;
        if (len == r)
            return eof ? r : 0;
        h = rol32(h, 1) ^ rol32(t[p[len - CASYNC_WINDOW]], CASYNC_WINDOW) ^ t[p[len]];
        len++;
    }
}

static PyObject *casync(PyObject *self, PyObject *args) {
    Py_buffer buf, table;
    Casync c;
    unsigned long d;
    PyObject *table_obj;
    int eof;
    if (!PyArg_ParseTuple(args, "y*nnnkOp", &buf, &c.min, &c.avg, &c.max, &d, &table_obj, &eof))
        return NULL;
    if (get_table(table_obj, &table, 4, "casync table") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    c.d = (uint32_t)d;
    c.t = table.buf;
    PyObject *lengths = cut_all(&buf, casync_cut, &c, eof);
    PyBuffer_Release(&table);
    PyBuffer_Release(&buf);
    return lengths;
}

/* ---- restic: Rabin fingerprint of the last 64 bytes, first min - 64 bytes of a chunk skipped ---- */

#define RESTIC_WINDOW 64

static inline uint64_t restic_append(uint64_t digest, uint8_t b, unsigned shift, const uint64_t *mod) {
    uint64_t index = digest >> shift;
    digest = (digest << 8) | b;
    return digest ^ mod[index];
}

typedef struct {
    Py_ssize_t min, max;
    uint64_t mask;
    unsigned shift;
    const uint64_t *out, *mod;
} Restic;

static Py_ssize_t restic_cut(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof) {
    const Restic *c = ctx;
    Py_ssize_t min = c->min, max = c->max;
    uint64_t mask = c->mask;
    unsigned shift = c->shift;
    const uint64_t *out = c->out, *mod = c->mod;
    if (r < min)
        return eof ? r : 0;
    /* restic's reset: a window of one 1 byte and 63 zeros, digest H(1); then the 64 bytes before
       min slide in, the 1 leaving with the last of them */
    uint64_t digest = restic_append(0, 1, shift, mod);
    const uint8_t *w = p + min - RESTIC_WINDOW;
    for (int k = 0; k < RESTIC_WINDOW; k++) {
        digest ^= out[k == RESTIC_WINDOW - 1 ? 1 : 0];
        digest = restic_append(digest, w[k], shift, mod);
    }
    Py_ssize_t len = min;
    for (;;) {
        if ((digest & mask) == 0 || len >= max)
            return len;
        if (len == r)
            return eof ? r : 0;
        digest ^= out[p[len - RESTIC_WINDOW]];
        digest = restic_append(digest, p[len], shift, mod);
        len++;
    }
}

static PyObject *restic(PyObject *self, PyObject *args) {
    Py_buffer buf, out_table, mod_table;
    Restic c;
    unsigned long long mask;
    unsigned int shift;
    PyObject *out_obj, *mod_obj;
    int eof;
    if (!PyArg_ParseTuple(args, "y*nnKIOOp", &buf, &c.min, &c.max, &mask, &shift, &out_obj, &mod_obj, &eof))
        return NULL;
    if (get_table(out_obj, &out_table, 8, "restic out table") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (get_table(mod_obj, &mod_table, 8, "restic mod table") < 0) {
        PyBuffer_Release(&out_table);
        PyBuffer_Release(&buf);
        return NULL;
    }
    c.mask = (uint64_t)mask;
    c.shift = shift;
    c.out = out_table.buf;
    c.mod = mod_table.buf;
    PyObject *lengths = cut_all(&buf, restic_cut, &c, eof);
    PyBuffer_Release(&mod_table);
    PyBuffer_Release(&out_table);
    PyBuffer_Release(&buf);
    return lengths;
}

/* ---- borg 1.x: seeded buzhash over a `window`-byte window that starts at the cut ---- */

typedef struct {
    Py_ssize_t min, max, window;
    uint32_t mask;
    const uint32_t *t;
} Borg;

static Py_ssize_t borg_cut(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof) {
    const Borg *c = ctx;
    Py_ssize_t min = c->min, max = c->max, window = c->window;
    uint32_t mask = c->mask;
    const uint32_t *t = c->t;
    /* borg yields the rest whole when fewer than min + window + 1 bytes remain */
    if (r < min + window + 1)
        return eof ? r : 0;
    /* windows starting at min .. end - window - 1 are tested, end = min(max, what remains): a
       window touching the end of borg's max-sized buffer (or of the input) is never tested */
    Py_ssize_t end = r >= max ? max : r;
    Py_ssize_t limit = end - window;
    unsigned shift = (unsigned)(window & 31);
    const uint8_t *w = p + min;
    uint32_t sum = 0;
    for (Py_ssize_t i = window - 1; i > 0; i--)
        sum ^= rol32(t[*w++], (unsigned)(i & 31));
    sum ^= t[*w];
    for (Py_ssize_t at = min; at < limit; at++) {
        if ((sum & mask) == 0)
            return at;
        sum = rol32(sum, 1) ^ rol32(t[p[at]], shift) ^ t[p[at + window]];
    }
    if (r >= max)
        return max;
    return eof ? r : 0;
}

static PyObject *borg(PyObject *self, PyObject *args) {
    Py_buffer buf, table;
    Borg c;
    unsigned long mask;
    PyObject *table_obj;
    int eof;
    if (!PyArg_ParseTuple(args, "y*nnnkOp", &buf, &c.min, &c.max, &c.window, &mask, &table_obj, &eof))
        return NULL;
    if (get_table(table_obj, &table, 4, "borg table") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    c.mask = (uint32_t)mask;
    c.t = table.buf;
    PyObject *lengths = cut_all(&buf, borg_cut, &c, eof);
    PyBuffer_Release(&table);
    PyBuffer_Release(&buf);
    return lengths;
}

/* ---- gear hashes: ncps (kalbasit/fastcdc, low-bit masks) and Xet (high-bit mask) ---- */

/* kalbasit/fastcdc: hashing starts at min (earlier bytes skipped), the easier mask up to
   norm_size, the harder one up to max; a cut after the byte whose hash matches. */
typedef struct {
    Py_ssize_t min, norm, max;
    uint64_t mask_s, mask_l;
    const uint64_t *t;
} Ncps;

static Py_ssize_t ncps_cut(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof) {
    const Ncps *c = ctx;
    Py_ssize_t min = c->min, norm = c->norm, max = c->max;
    uint64_t mask_s = c->mask_s, mask_l = c->mask_l;
    const uint64_t *t = c->t;
    uint64_t fp = 0;
    Py_ssize_t i = min;
    Py_ssize_t end = norm < r ? norm : r;
    for (; i < end; i++) {
        fp = (fp << 1) + t[p[i]];
        if ((fp & mask_s) == 0)
            return i + 1;
    }
    end = max < r ? max : r;
    for (; i < end; i++) {
        fp = (fp << 1) + t[p[i]];
        if ((fp & mask_l) == 0)
            return i + 1;
    }
    if (r >= max)
        return max;
    return eof ? r : 0;
}

static PyObject *ncps(PyObject *self, PyObject *args) {
    Py_buffer buf, table;
    Ncps c;
    unsigned long long mask_s, mask_l;
    PyObject *table_obj;
    int eof;
    if (!PyArg_ParseTuple(args, "y*nnnKKOp", &buf, &c.min, &c.norm, &c.max, &mask_s, &mask_l, &table_obj, &eof))
        return NULL;
    if (get_table(table_obj, &table, 8, "ncps table") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    c.mask_s = (uint64_t)mask_s;
    c.mask_l = (uint64_t)mask_l;
    c.t = table.buf;
    PyObject *lengths = cut_all(&buf, ncps_cut, &c, eof);
    PyBuffer_Release(&table);
    PyBuffer_Release(&buf);
    return lengths;
}

/* Xet: the gear hash restarts at 0 at each chunk, min - 65 bytes skipped; a match before min is
   ignored (the hash has not yet seen 64 bytes of this chunk); cut at max at the latest. */
typedef struct {
    Py_ssize_t min, max;
    uint64_t mask;
    const uint64_t *t;
} Xet;

static Py_ssize_t xet_cut(const uint8_t *p, Py_ssize_t r, const void *ctx, int eof) {
    const Xet *c = ctx;
    Py_ssize_t min = c->min, max = c->max;
    uint64_t mask = c->mask;
    const uint64_t *t = c->t;
    uint64_t h = 0;
    Py_ssize_t i = min > 65 ? min - 65 : 0;
    Py_ssize_t end = max < r ? max : r;
    for (; i < end; i++) {
        h = (h << 1) + t[p[i]];
        if ((h & mask) == 0 && i + 1 >= min)
            return i + 1;
    }
    if (r >= max)
        return max;
    return eof ? r : 0;
}

static PyObject *xet(PyObject *self, PyObject *args) {
    Py_buffer buf, table;
    Xet c;
    unsigned long long mask;
    PyObject *table_obj;
    int eof;
    if (!PyArg_ParseTuple(args, "y*nnKOp", &buf, &c.min, &c.max, &mask, &table_obj, &eof))
        return NULL;
    if (get_table(table_obj, &table, 8, "xet table") < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    c.mask = (uint64_t)mask;
    c.t = table.buf;
    PyObject *lengths = cut_all(&buf, xet_cut, &c, eof);
    PyBuffer_Release(&table);
    PyBuffer_Release(&buf);
    return lengths;
}

/* ---- zstd:chunked (containers/storage): bup's rollsum over 64 bytes, never restarted within a
   file; a run of at least `hole` zero bytes is a chunk of its own ---- */

#define ROLLSUM_WINDOW 64
#define ROLLSUM_OFFSET 31
#define ROLLSUM_S1 (ROLLSUM_WINDOW * ROLLSUM_OFFSET)
#define ROLLSUM_S2 (ROLLSUM_WINDOW * (ROLLSUM_WINDOW - 1) * ROLLSUM_OFFSET)

/* The state is a function of the last 64 bytes only (zeros before the file's start): the byte
   leaving the window at position i is the buffer's own byte i - 64, or, for the first 64
   positions, the window the caller's history leaves (oldest first). */
static PyObject *zstd_chunked(PyObject *self, PyObject *args) {
    Py_buffer buf, history;
    unsigned int bits;
    Py_ssize_t hole;
    int eof;
    if (!PyArg_ParseTuple(args, "y*y*Inp", &buf, &history, &bits, &hole, &eof))
        return NULL;
    Lengths out = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *p = buf.buf;
    Py_ssize_t n = buf.len;
    uint32_t mask = bits >= 32 ? UINT32_MAX : ((UINT32_C(1) << bits) - 1);
    uint8_t start_window[ROLLSUM_WINDOW] = {0};
    uint32_t s1 = ROLLSUM_S1, s2 = ROLLSUM_S2;
    {
        const uint8_t *h = history.buf;
        Py_ssize_t from = history.len > ROLLSUM_WINDOW ? history.len - ROLLSUM_WINDOW : 0;
        Py_ssize_t kept = history.len - from;
        memcpy(start_window + ROLLSUM_WINDOW - kept, h + from, (size_t)kept);
        uint8_t zeros[ROLLSUM_WINDOW] = {0};
        for (int k = 0; k < ROLLSUM_WINDOW; k++) { /* roll the window in, over zeros */
            uint32_t drop = zeros[k], add = start_window[k];
            s1 = s1 + add - drop;
            s2 += s1 - (uint32_t)ROLLSUM_WINDOW * (drop + ROLLSUM_OFFSET);
        }
    }
#define DROP(i) ((i) >= ROLLSUM_WINDOW ? p[(i) - ROLLSUM_WINDOW] : start_window[(i)])
#define ROLL(i, b)                                                                     \
    do {                                                                               \
        uint32_t drop_ = DROP(i);                                                      \
        s1 = s1 + (b) - drop_;                                                         \
        s2 += s1 - (uint32_t)ROLLSUM_WINDOW * (drop_ + ROLLSUM_OFFSET);                \
    } while (0)
    Py_ssize_t start = 0, i = 0;
    while (i < n && !failed) {
        uint8_t b = p[i];
        if (b != 0) {
            ROLL(i, b);
            if ((s2 & mask) == mask) {
                if (lengths_push(&out, i + 1 - start) < 0)
                    failed = 1;
                start = i + 1;
            }
            i++;
            continue;
        }
        Py_ssize_t j = i;
        while (j < n && p[j] == 0)
            j++;
        if (j == n && !eof)
            break; /* the run may go on: hole or not is undecided */
        if (j - i >= hole) {
            if (i > start && lengths_push(&out, i - start) < 0)
                failed = 1;
            if (lengths_push(&out, j - i) < 0)
                failed = 1;
            if (j - i >= ROLLSUM_WINDOW) { /* a window of zeros: the fresh state */
                s1 = ROLLSUM_S1;
                s2 = ROLLSUM_S2;
            } else {
                for (Py_ssize_t k = i; k < j; k++)
                    ROLL(k, 0);
            }
            start = i = j;
            continue;
        }
        for (; i < j; i++) { /* a short run: ordinary bytes */
            ROLL(i, 0);
            if ((s2 & mask) == mask) {
                if (lengths_push(&out, i + 1 - start) < 0)
                    failed = 1;
                start = i + 1;
            }
        }
    }
#undef ROLL
#undef DROP
    if (eof && !failed && start < n && lengths_push(&out, n - start) < 0)
        failed = 1;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&history);
    PyBuffer_Release(&buf);
    return lengths_list(&out, failed);
}

static PyMethodDef methods[] = {
    {"casync", casync, METH_VARARGS, "casync(buf, min, avg, max, discriminator, table, eof) -> chunk lengths"},
    {"restic", restic, METH_VARARGS, "restic(buf, min, max, mask, pol_shift, out_table, mod_table, eof) -> chunk lengths"},
    {"borg", borg, METH_VARARGS, "borg(buf, min, max, window, mask, table, eof) -> chunk lengths"},
    {"ncps", ncps, METH_VARARGS, "ncps(buf, min, norm_size, max, mask_s, mask_l, table, eof) -> chunk lengths"},
    {"xet", xet, METH_VARARGS, "xet(buf, min, max, mask, table, eof) -> chunk lengths"},
    {"zstd_chunked", zstd_chunked, METH_VARARGS, "zstd_chunked(buf, history, bits, hole, eof) -> chunk lengths"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cdc", "Cut-point loops of the peer chunkers (see storelab.chunking).", -1, methods,
};

PyMODINIT_FUNC PyInit__cdc(void) { return PyModule_Create(&module); }
