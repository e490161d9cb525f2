/* storelab/_c/digest.h: the digest of a byte range by a Python hash type, from C.
 *
 * Included by the C extensions that hash what they read (storelab/ingest/_smallfiles.c,
 * storelab/nar/_scan.c). The digest stays the library's: `hash_type(view).digest()` is called
 * on a read-only memoryview of the bytes, no copy made.
 */
#ifndef STORELAB_DIGEST_H
#define STORELAB_DIGEST_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define DIGEST_BYTES 32

/* hash_type(view of `length` bytes at `data`).digest(), 32 bytes, copied to `out`; -1 with a
 * Python exception set when the call failed or gave anything but 32 bytes. */
static int hash_into(PyObject *hash_type, PyObject *digest_name, const void *data, Py_ssize_t length, char *out) {
    PyObject *view = PyMemoryView_FromMemory((char *)data, length, PyBUF_READ);
    if (!view)
        return -1;
    PyObject *hasher = PyObject_CallOneArg(hash_type, view);
    Py_DECREF(view);
    if (!hasher)
        return -1;
    PyObject *digest = PyObject_CallMethodNoArgs(hasher, digest_name);
    Py_DECREF(hasher);
    if (!digest)
        return -1;
    if (!PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != DIGEST_BYTES) {
        PyErr_SetString(PyExc_TypeError, "the hash type's digest() must give 32 bytes");
        Py_DECREF(digest);
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(digest), DIGEST_BYTES);
    Py_DECREF(digest);
    return 0;
}

#endif
