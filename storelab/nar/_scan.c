/* storelab.nar._scan: read runs of well-formed NAR entries held in the reader's buffer, in C.
 *
 * A binary cache's NAR is mostly small files: per entry the Python reader spent more time on
 * its tokens (the entry's head, the name's checks, the file's header, the closing parentheses,
 * an event object and its generator) than BLAKE3 spent on the contents. This module reads, from
 * one of the reader's states, as many consecutive entries as the buffer holds complete and well
 * formed: directories opening and closing, symlinks, and files of at most `digest_max` bytes,
 * whose contents it hashes by calling the hash type it is given (blake3.blake3: the digest stays
 * the library's) instead of handing them out.
 *
 * It is only a faster road to the same events. It stops, leaving the reader exactly at the state
 * it last completed (between two entries), before anything it does not take whole: an entry not
 * all in the buffer, a larger file, any token that is not the usual one, a name or target that
 * is invalid or out of order, padding that is not zero, nesting at the limit. The Python reader
 * then reads that entry its own way and names any mistake: nothing about errors is decided here.
 *
 * The reader's state is shared, not copied: `stack` is the reader's own list of open directories
 * ([path, last name] each), updated here as entries are taken.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_c/digest.h"

#define NAME_MAX_BYTES 255
#define TARGET_MAX_BYTES 4095 /* as storelab.castore.nodes.MAX_TARGET_LEN */

/* The run's codes, one per event (storelab.nar.reader.NarRun). */
#define KIND_FILE 'f'
#define KIND_EXECUTABLE 'x'
#define KIND_SYMLINK 'l'
#define KIND_DIRECTORY 'd'
#define KIND_END 'e'

/* The token sequences of the usual entry, encoded as in a NAR (built at import). */
typedef struct {
    unsigned char bytes[80];
    Py_ssize_t length;
} Pattern;

static Pattern CLOSE, ENTRY_HEAD, NODE_HEAD, PLAIN_HEAD, EXECUTABLE_HEAD, SYMLINK_HEAD, DIRECTORY;

static void append_token(Pattern *p, const char *token) {
    uint64_t n = strlen(token);
    memcpy(p->bytes + p->length, &n, 8); /* little-endian: the only byte order CPython builds here */
    memcpy(p->bytes + p->length + 8, token, n);
    Py_ssize_t padded = (Py_ssize_t)((n + 7) / 8 * 8);
    memset(p->bytes + p->length + 8 + n, 0, (size_t)padded - n);
    p->length += 8 + padded;
}

static void pattern(Pattern *p, const char *a, const char *b, const char *c, const char *d) {
    p->length = 0;
    const char *tokens[] = {a, b, c, d};
    for (int i = 0; i < 4 && tokens[i]; i++)
        append_token(p, tokens[i]);
}

/* Whether `p` is at `pos` of a buffer of `size` bytes. */
static int at(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, const Pattern *p) {
    return pos + p->length <= size && memcmp(buf + pos, p->bytes, (size_t)p->length) == 0;
}

static int read_u64(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, uint64_t *out) {
    if (pos + 8 > size)
        return 0;
    memcpy(out, buf + pos, 8);
    return 1;
}

static int zeros(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static Py_ssize_t padded(uint64_t n) { return (Py_ssize_t)((n + 7) & ~(uint64_t)7); }

/* A name the reader would accept after `last` (NULL: the directory's first entry). */
static int valid_name(const unsigned char *name, Py_ssize_t n, PyObject *last) {
    if (n < 1 || n > NAME_MAX_BYTES)
        return 0;
    if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    if (memchr(name, '/', (size_t)n) || memchr(name, 0, (size_t)n))
        return 0;
    if (last == NULL || last == Py_None)
        return 1;
    if (!PyBytes_Check(last))
        return 0;
    Py_ssize_t m = PyBytes_GET_SIZE(last);
    int c = memcmp(name, PyBytes_AS_STRING(last), (size_t)(n < m ? n : m));
    return c > 0 || (c == 0 && n > m); /* strictly after, bytewise: no duplicates */
}

/* `directory` + "/" + `name` (just `name` under the root). */
static PyObject *join(PyObject *directory, const unsigned char *name, Py_ssize_t n) {
    Py_ssize_t d = PyBytes_GET_SIZE(directory);
    PyObject *path = PyBytes_FromStringAndSize(NULL, d ? d + 1 + n : n);
    if (!path)
        return NULL;
    char *out = PyBytes_AS_STRING(path);
    if (d) {
        memcpy(out, PyBytes_AS_STRING(directory), (size_t)d);
        out[d] = '/';
        out += d + 1;
    }
    memcpy(out, name, (size_t)n);
    return path;
}

/* Append `length` bytes to a growing bytearray-like buffer held as a PyBytes (resized). */
typedef struct {
    PyObject *bytes;
    Py_ssize_t used;
} Growing;

static char *grow(Growing *g, Py_ssize_t length) {
    Py_ssize_t have = PyBytes_GET_SIZE(g->bytes);
    if (g->used + length > have) {
        Py_ssize_t want = have * 2 > g->used + length ? have * 2 : g->used + length;
        if (_PyBytes_Resize(&g->bytes, want) != 0)
            return NULL;
    }
    char *out = PyBytes_AS_STRING(g->bytes) + g->used;
    g->used += length;
    return out;
}

PyDoc_STRVAR(scan_doc,
    "scan(buf, pos, stack, finished, max_depth, digest_max, hash_type) -> None | tuple\n\n"
    "From the reader's state between entries (`pos` in `buf`; `stack` its list of open directories,\n"
    "[path, last name] each; `finished`: whether the node before `pos` is complete, its entry not yet\n"
    "closed), take every following entry that `buf` holds complete and well formed, updating `stack`.\n"
    "None when not one was taken; else (pos, finished, kinds, paths, sizes, targets, digests):\n"
    "the state reached, one code per event in `kinds` (f file, x executable file, l symlink,\n"
    "d directory start, e directory end), one path per event, one size and one 32-byte digest\n"
    "(hash_type(view).digest()) per file, one target per symlink.\n"
    "Files over `digest_max` bytes (all files when it is negative) stop the run, as does a directory\n"
    "that would be opened at depth `max_depth`, and the root's end.");

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, max_depth, digest_max;
    PyObject *stack, *hash_type;
    int finished;
    if (!PyArg_ParseTuple(args, "y*nO!pnnO:scan", &view, &pos, &PyList_Type, &stack, &finished, &max_depth, &digest_max, &hash_type))
        return NULL;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t size = view.len;
    PyObject *result = NULL, *paths = PyList_New(0), *sizes = PyList_New(0), *targets = PyList_New(0);
    PyObject *digest_name = PyUnicode_InternFromString("digest");
    Growing kinds = {PyBytes_FromStringAndSize(NULL, 64), 0};
    Growing digests = {PyBytes_FromStringAndSize(NULL, 64 * DIGEST_BYTES), 0};
    if (!paths || !sizes || !targets || !digest_name || !kinds.bytes || !digests.bytes)
        goto fail;
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        goto fail;
    }
    for (;;) {
        Py_ssize_t depth = PyList_GET_SIZE(stack);
        if (depth == 0)
            break; /* the root's end: the reader finishes the NAR */
        PyObject *top = PyList_GET_ITEM(stack, depth - 1);
        if (!PyList_Check(top) || PyList_GET_SIZE(top) != 2 || !PyBytes_Check(PyList_GET_ITEM(top, 0))) {
            PyErr_SetString(PyExc_TypeError, "stack items must be [path, last name]");
            goto fail;
        }
        Py_ssize_t p = pos;
        if (finished) { /* the finished node's entry closes first */
            if (!at(buf, size, p, &CLOSE))
                break;
            p += CLOSE.length;
        }
        if (at(buf, size, p, &CLOSE)) { /* the open directory ends */
            char *code = grow(&kinds, 1);
            if (!code || PyList_Append(paths, PyList_GET_ITEM(top, 0)) != 0)
                goto fail;
            *code = KIND_END;
            if (PyList_SetSlice(stack, depth - 1, depth, NULL) != 0)
                goto fail;
            pos = p + CLOSE.length;
            finished = 1;
            continue;
        }
        /* entry ( name NAME node ( type */
        if (!at(buf, size, p, &ENTRY_HEAD))
            break;
        p += ENTRY_HEAD.length;
        uint64_t n;
        if (!read_u64(buf, size, p, &n) || n > NAME_MAX_BYTES || p + 8 + padded(n) > size)
            break;
        const unsigned char *name = buf + p + 8;
        if (!zeros(name + n, padded(n) - (Py_ssize_t)n) || !valid_name(name, (Py_ssize_t)n, PyList_GET_ITEM(top, 1)))
            break;
        p += 8 + padded(n);
        if (!at(buf, size, p, &NODE_HEAD))
            break;
        p += NODE_HEAD.length;
        /* the node's body, taken whole or not at all */
        char kind;
        uint64_t length = 0;
        Py_ssize_t contents = 0;
        if (at(buf, size, p, &PLAIN_HEAD) || at(buf, size, p, &EXECUTABLE_HEAD)) {
            kind = at(buf, size, p, &PLAIN_HEAD) ? KIND_FILE : KIND_EXECUTABLE;
            p += kind == KIND_FILE ? PLAIN_HEAD.length : EXECUTABLE_HEAD.length;
            if (!read_u64(buf, size, p, &length) || digest_max < 0 || length > (uint64_t)digest_max)
                break;
            contents = p + 8;
            if (contents + padded(length) > size || !zeros(buf + contents + length, padded(length) - (Py_ssize_t)length))
                break;
            p = contents + padded(length);
        } else if (at(buf, size, p, &SYMLINK_HEAD)) {
            kind = KIND_SYMLINK;
            p += SYMLINK_HEAD.length;
            if (!read_u64(buf, size, p, &length) || length < 1 || length > TARGET_MAX_BYTES || p + 8 + padded(length) > size)
                break;
            contents = p + 8;
            if (memchr(buf + contents, 0, (size_t)length) || !zeros(buf + contents + length, padded(length) - (Py_ssize_t)length))
                break;
            p = contents + padded(length);
        } else if (at(buf, size, p, &DIRECTORY)) {
            kind = KIND_DIRECTORY;
            if (depth + 1 >= max_depth)
                break;
            p += DIRECTORY.length;
        } else {
            break;
        }
        if (kind != KIND_DIRECTORY) { /* a file's or symlink's node closes */
            if (!at(buf, size, p, &CLOSE))
                break;
            p += CLOSE.length;
        }
        /* complete: record it */
        PyObject *entry_name = PyBytes_FromStringAndSize((const char *)name, (Py_ssize_t)n);
        if (!entry_name)
            goto fail;
        PyObject *path = join(PyList_GET_ITEM(top, 0), name, (Py_ssize_t)n);
        if (!path) {
            Py_DECREF(entry_name);
            goto fail;
        }
        PyList_SetItem(top, 1, entry_name); /* steals entry_name; the directory's last entry now */
        int failed = PyList_Append(paths, path) != 0;
        char *code = failed ? NULL : grow(&kinds, 1);
        if (!code) {
            Py_DECREF(path);
            goto fail;
        }
        *code = kind;
        if (kind == KIND_DIRECTORY) {
            PyObject *opened = Py_BuildValue("[OO]", path, Py_None);
            failed = !opened || PyList_Append(stack, opened) != 0;
            Py_XDECREF(opened);
            finished = 0;
        } else if (kind == KIND_SYMLINK) {
            PyObject *target = PyBytes_FromStringAndSize((const char *)buf + contents, (Py_ssize_t)length);
            failed = !target || PyList_Append(targets, target) != 0;
            Py_XDECREF(target);
            finished = 1;
        } else {
            PyObject *file_size = PyLong_FromUnsignedLongLong(length);
            char *digest = grow(&digests, DIGEST_BYTES);
            failed = !file_size || !digest || PyList_Append(sizes, file_size) != 0 ||
                     hash_into(hash_type, digest_name, buf + contents, (Py_ssize_t)length, digest) != 0;
            Py_XDECREF(file_size);
            finished = 1;
        }
        Py_DECREF(path);
        if (failed)
            goto fail;
        pos = p;
    }
    if (kinds.used == 0) {
        result = Py_NewRef(Py_None);
        goto fail;
    }
    if (_PyBytes_Resize(&kinds.bytes, kinds.used) != 0 || _PyBytes_Resize(&digests.bytes, digests.used) != 0)
        goto fail;
    result = Py_BuildValue("(nNOOOOO)", pos, PyBool_FromLong(finished), kinds.bytes, paths, sizes, targets, digests.bytes);
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(paths);
    Py_XDECREF(sizes);
    Py_XDECREF(targets);
    Py_XDECREF(digest_name);
    Py_XDECREF(kinds.bytes);
    Py_XDECREF(digests.bytes);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "storelab.nar._scan",
    "Read runs of well-formed NAR entries in C (see storelab/nar/_scan.c).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__scan(void) {
    pattern(&CLOSE, ")", NULL, NULL, NULL);
    pattern(&ENTRY_HEAD, "entry", "(", "name", NULL);
    pattern(&NODE_HEAD, "node", "(", "type", NULL);
    pattern(&PLAIN_HEAD, "regular", "contents", NULL, NULL);
    pattern(&EXECUTABLE_HEAD, "regular", "executable", "", "contents");
    pattern(&SYMLINK_HEAD, "symlink", "target", NULL, NULL);
    pattern(&DIRECTORY, "directory", NULL, NULL, NULL);
    return PyModule_Create(&module);
}
