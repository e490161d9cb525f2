/* storelab.castore._encode: the `files` fields of Directory messages, many at once.
 *
 * Every file of every tree becomes one FileNode inside its directory's message; encoding it in
 * Python (storelab.castore.nodes.encode_file_entry) cost more per file than the rest of what the
 * recorder does with it. This is the same encoding — field 2 (length-delimited) holding the
 * FileNode: name (1), digest (2, 32 bytes), size (3, omitted when 0), executable (4, omitted
 * when false) — for a whole batch of files in one call. It trusts its caller (names and digests
 * come from a listing and a hash, never from input to be checked): wrong lengths are a
 * ValueError, nothing more.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define DIGEST_BYTES 32

static size_t put_varint(unsigned char *out, uint64_t value) {
    size_t n = 0;
    while (value >= 0x80) {
        out[n++] = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    out[n++] = (unsigned char)value;
    return n;
}

static size_t varint_length(uint64_t value) {
    size_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

/* One encoded field into a new bytes object; NULL with an exception set on failure. */
static PyObject *file_entry(const char *name, Py_ssize_t name_length, const char *digest, uint64_t size, int executable) {
    size_t inner = 1 + varint_length((uint64_t)name_length) + (size_t)name_length + 2 + DIGEST_BYTES;
    if (size)
        inner += 1 + varint_length(size);
    if (executable)
        inner += 2;
    size_t total = 1 + varint_length(inner) + inner;
    PyObject *field = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!field)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(field);
    size_t at = 0;
    out[at++] = 0x12; /* Directory.files: field 2, length-delimited */
    at += put_varint(out + at, inner);
    out[at++] = 0x0a; /* FileNode.name: field 1, length-delimited */
    at += put_varint(out + at, (uint64_t)name_length);
    memcpy(out + at, name, (size_t)name_length);
    at += (size_t)name_length;
    out[at++] = 0x12; /* FileNode.digest: field 2, 32 bytes */
    out[at++] = DIGEST_BYTES;
    memcpy(out + at, digest, DIGEST_BYTES);
    at += DIGEST_BYTES;
    if (size) {
        out[at++] = 0x18; /* FileNode.size: field 3, varint */
        at += put_varint(out + at, size);
    }
    if (executable) {
        out[at++] = 0x20; /* FileNode.executable: field 4, varint 1 */
        out[at++] = 0x01;
    }
    return field;
}

PyDoc_STRVAR(file_entries_doc,
    "file_entries(names, digests, sizes, executables) -> list[bytes]\n\n"
    "encode_file_entry(names[i], digests[32 * i: 32 * i + 32], sizes[i], executables[i]) for\n"
    "every i, in one call: `names` a list of bytes, `digests` bytes (32 per name), `sizes` and\n"
    "`executables` sequences of ints and truth values as long as `names`.");

static PyObject *file_entries(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *names, *sizes_object, *executables_object;
    Py_buffer digests;
    if (!PyArg_ParseTuple(args, "O!y*OO:file_entries", &PyList_Type, &names, &digests, &sizes_object, &executables_object))
        return NULL;
    PyObject *result = NULL, *sizes = NULL, *executables = NULL;
    Py_ssize_t count = PyList_GET_SIZE(names);
    sizes = PySequence_Fast(sizes_object, "sizes must be a sequence");
    executables = PySequence_Fast(executables_object, "executables must be a sequence");
    if (!sizes || !executables)
        goto done;
    if (digests.len != count * DIGEST_BYTES || PySequence_Fast_GET_SIZE(sizes) != count ||
        PySequence_Fast_GET_SIZE(executables) != count) {
        PyErr_SetString(PyExc_ValueError, "one size, one execute bit and 32 bytes of digest per name");
        goto done;
    }
    result = PyList_New(count);
    if (!result)
        goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *name = PyList_GET_ITEM(names, k);
        if (!PyBytes_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "names must be bytes");
            goto fail;
        }
        unsigned long long size = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(sizes, k));
        if (size == (unsigned long long)-1 && PyErr_Occurred())
            goto fail;
        int executable = PyObject_IsTrue(PySequence_Fast_GET_ITEM(executables, k));
        if (executable < 0)
            goto fail;
        PyObject *field = file_entry(PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name),
                                     (const char *)digests.buf + k * DIGEST_BYTES, (uint64_t)size, executable);
        if (!field)
            goto fail;
        PyList_SET_ITEM(result, k, field);
    }
    goto done;
fail:
    Py_CLEAR(result);
done:
    PyBuffer_Release(&digests);
    Py_XDECREF(sizes);
    Py_XDECREF(executables);
    return result;
}

static PyMethodDef methods[] = {
    {"file_entries", file_entries, METH_VARARGS, file_entries_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "storelab.castore._encode",
    "The files fields of Directory messages, many at once (see storelab/castore/_encode.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__encode(void) { return PyModule_Create(&module); }
