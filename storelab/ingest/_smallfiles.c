/* storelab.ingest._smallfiles: read and hash a run of small files without the interpreter
 * between the system calls.
 *
 * A tree of a binary cache is mostly files of a few KB: per file, Python spent more time on
 * the calls around the read (open, fstat, readv, fstat, close, the checks, the digest) than the
 * kernel and BLAKE3 spent on the bytes. This module does that sequence in C for a whole run of
 * files, calling the hash type it is given (blake3.blake3: the digest stays the library's).
 *
 * It is only a faster road to the same result. Every file it cannot take the ordinary way (a
 * path too long for one open(2), an error of any kind, not a regular file, larger than the limit,
 * a read that does not return exactly the size fstat gave, a size or mtime that changed while
 * it was read) is left undone and reported so: the caller hashes that file its usual way
 * (BlobHasher.hash_file_into), which raises the error with its message, or succeeds on a file
 * that changed back. Nothing about errors is decided here.
 *
 * The GIL is released around each file's system calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../_c/digest.h"
#include "../_c/readfile.h"

/* As storelab.ingest.tree._PATH_PIECE: longer paths are opened piece by piece, in Python. */
#define LONGEST_PATH 2048

/* Read the file at `path` into `buffer` (capacity > limit): its length, or -1 when it must be
 * left to the caller (see the module's comment). Called without the GIL. */
static Py_ssize_t read_small(const char *path, char *buffer, Py_ssize_t limit) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat before;
    Py_ssize_t got = -1;
    if (fstat(fd, &before) == 0 && S_ISREG(before.st_mode))
        got = read_whole(fd, &before, buffer, limit);
    close(fd);
    return got;
}

PyDoc_STRVAR(hash_files_doc,
    "hash_files(paths, limit, buffer, hash_type) -> (done, digests, sizes)\n\n"
    "Read each file of `paths` (bytes) whole into `buffer` (writable, longer than `limit`) and hash\n"
    "it with hash_type(view).digest() (32 bytes). `done` has one byte per path: 1 when the file was\n"
    "read and hashed, 0 when it is left to the caller (any error, not a regular file, larger than\n"
    "`limit`, changed while read, a path of 2,048 bytes or more). `digests` holds 32 bytes and\n"
    "`sizes` one native uint64 per done file, in the order of `paths`.");

static PyObject *hash_files(PyObject *self, PyObject *args) {
    PyObject *paths, *hash_type;
    Py_ssize_t limit;
    Py_buffer buffer;
    if (!PyArg_ParseTuple(args, "Onw*O:hash_files", &paths, &limit, &buffer, &hash_type))
        return NULL;
    PyObject *result = NULL, *done = NULL, *digests = NULL, *sizes = NULL, *digest_name = NULL;
    PyObject *sequence = PySequence_Fast(paths, "paths must be a sequence of bytes");
    if (!sequence)
        goto fail;
    if (limit < 0 || buffer.len <= limit) {
        PyErr_SetString(PyExc_ValueError, "the buffer must be longer than limit (>= 0)");
        goto fail;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    done = PyBytes_FromStringAndSize(NULL, count);
    digests = PyBytes_FromStringAndSize(NULL, count * DIGEST_BYTES);
    sizes = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(uint64_t));
    digest_name = PyUnicode_InternFromString("digest");
    if (!done || !digests || !sizes || !digest_name)
        goto fail;
    char *done_at = PyBytes_AS_STRING(done);
    char *digest_at = PyBytes_AS_STRING(digests);
    char *size_at = PyBytes_AS_STRING(sizes);
    Py_ssize_t hashed = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *path = PySequence_Fast_GET_ITEM(sequence, k);
        if (!PyBytes_Check(path)) {
            PyErr_SetString(PyExc_TypeError, "paths must be bytes");
            goto fail;
        }
        const char *name = PyBytes_AS_STRING(path);
        Py_ssize_t name_length = PyBytes_GET_SIZE(path);
        Py_ssize_t length = -1;
        /* a NUL inside the name would open another file: the caller's way refuses it */
        if (name_length < LONGEST_PATH && (Py_ssize_t)strlen(name) == name_length) {
            Py_BEGIN_ALLOW_THREADS
            length = read_small(name, (char *)buffer.buf, limit);
            Py_END_ALLOW_THREADS
        }
        done_at[k] = length >= 0;
        if (length < 0)
            continue;
        if (hash_into(hash_type, digest_name, (char *)buffer.buf, length, digest_at + hashed * DIGEST_BYTES) != 0)
            goto fail;
        uint64_t size = (uint64_t)length;
        memcpy(size_at + hashed * (Py_ssize_t)sizeof(uint64_t), &size, sizeof size);
        hashed++;
    }
    if (_PyBytes_Resize(&digests, hashed * DIGEST_BYTES) != 0 ||
        _PyBytes_Resize(&sizes, hashed * (Py_ssize_t)sizeof(uint64_t)) != 0)
        goto fail;
    result = PyTuple_Pack(3, done, digests, sizes);
fail:
    PyBuffer_Release(&buffer);
    Py_XDECREF(sequence);
    Py_XDECREF(done);
    Py_XDECREF(digests);
    Py_XDECREF(sizes);
    Py_XDECREF(digest_name);
    return result;
}

static PyMethodDef methods[] = {
    {"hash_files", hash_files, METH_VARARGS, hash_files_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "storelab.ingest._smallfiles",
    "Read and hash runs of small files in C (see storelab/ingest/_smallfiles.c).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__smallfiles(void) { return PyModule_Create(&module); }
