/* storelab.ingest._listing: list one directory in C — names in byte order, each entry's kind,
 * a file's size and execute bit, a symlink's target — and, if asked, read and hash its small
 * files on the way.
 *
 * A binary cache's tree has a directory for every few files: per entry, Python spent more time
 * on the listing (a DirEntry, a sort key, a stat result, the kind checks) than the kernel spent
 * on the system calls. This module makes the same system calls the Python listing makes
 * (open, getdents, an lstat per regular file, faccessat per directory, readlink per symlink),
 * relative to the directory's descriptor, and returns the listing as a few flat values.
 *
 * Asked to read files up to a size, it opens each regular file instead of its lstat (openat
 * relative to the directory, then fstat: one path lookup where listing and hashing made two,
 * the second by the file's full path) and, while a byte budget lasts, reads the small ones
 * whole and hashes them with the hash type it is given (blake3.blake3: the digest stays the
 * library's), as storelab.ingest._smallfiles does — the same checks (storelab/_c/readfile.h).
 *
 * It is only a faster road to the same listing. A directory holding anything the Python listing
 * would leave out or treat specially (an error of any kind, a FIFO, socket or device, a
 * directory it may not enter, a symlink whose target castore cannot hold, a path too long for
 * one open(2)) is not listed here at all: the caller lists it its own way, and says what it
 * skipped and why. A file it cannot open is listed by its lstat, a file it cannot read as
 * checked is listed unread: the caller reads them its own way, and names what is wrong.
 * Nothing about errors is decided here.
 *
 * The GIL is released around the system calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../_c/digest.h"
#include "../_c/readfile.h"

/* As storelab.ingest.tree._PATH_PIECE: longer paths are opened piece by piece, in Python. */
#define LONGEST_PATH 2048
#define TARGET_MAX_BYTES 4095 /* as storelab.castore.nodes.MAX_TARGET_LEN */

#define KIND_FILE 'f'
#define KIND_READ 'r' /* a regular file read and hashed here */
#define KIND_DIRECTORY 'd'
#define KIND_SYMLINK 'l'

typedef struct {
    char *name; /* NUL-terminated, owned */
    size_t length;
    unsigned char d_type;
    char kind;
    int executable;
    long long size;
    char *target; /* symlinks: owned, not NUL-terminated */
    ssize_t target_length;
    char digest[DIGEST_BYTES]; /* KIND_READ */
} Item;

typedef struct {
    Item *items;
    size_t count, capacity;
} Items;

/* Which files to read: up to `limit` bytes each (-1: none), into `buffer` (longer than limit),
 * while `budget` bytes are left (the file that crosses it is still read whole). */
typedef struct {
    Py_ssize_t limit;
    long long budget;
    char *buffer;
} Reads;

static void free_items(Items *items) {
    for (size_t i = 0; i < items->count; i++) {
        free(items->items[i].name);
        free(items->items[i].target);
    }
    free(items->items);
}

static int by_name(const void *a, const void *b) {
    const Item *x = a, *y = b;
    size_t n = x->length < y->length ? x->length : y->length;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->length > y->length) - (x->length < y->length);
}

/* A regular file opened relative to the directory: kept with its size and execute bit, and read
 * into the buffer (its length in *read_length) when small enough and the budget lasts. 0 when it
 * is no regular file any more (the whole directory is then left to the caller); -1 when it could
 * not be opened (the caller lists it by its lstat). */
static int open_file(int fd, Item *item, Reads *reads, Py_ssize_t *read_length) {
    int file = openat(fd, item->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (file < 0)
        return -1;
    struct stat st;
    int regular = fstat(file, &st) == 0 && S_ISREG(st.st_mode);
    if (regular) {
        item->kind = KIND_FILE;
        item->size = (long long)st.st_size;
        item->executable = (st.st_mode & S_IXUSR) != 0;
        if (st.st_size <= reads->limit)
            *read_length = read_whole(file, &st, reads->buffer, reads->limit);
    }
    close(file);
    return regular;
}

/* Classify one entry as the Python listing would keep it; 0 when it would not (or any call
 * failed): the whole directory is then left to the caller. A file read into the buffer has its
 * length in *read_length (else -1). Called without the GIL. */
static int describe(int fd, Item *item, Reads *reads, Py_ssize_t *read_length) {
    struct stat st;
    unsigned char d_type = item->d_type;
    *read_length = -1;
    if (d_type == DT_UNKNOWN) { /* the file system does not say: ask, as DirEntry.is_file() would */
        if (fstatat(fd, item->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return 0;
        d_type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    }
    if (d_type == DT_REG) {
        if (reads->limit >= 0 && reads->budget > 0) {
            int opened = open_file(fd, item, reads, read_length);
            if (opened >= 0)
                return opened;
        }
        if (fstatat(fd, item->name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            return 0;
        item->kind = KIND_FILE;
        item->size = (long long)st.st_size;
        item->executable = (st.st_mode & S_IXUSR) != 0;
        return 1;
    }
    if (d_type == DT_DIR) {
        if (faccessat(fd, item->name, R_OK | X_OK, AT_SYMLINK_NOFOLLOW) != 0)
            return 0;
        item->kind = KIND_DIRECTORY;
        return 1;
    }
    if (d_type == DT_LNK) {
        item->target = malloc(TARGET_MAX_BYTES + 1);
        if (!item->target)
            return 0;
        item->target_length = readlinkat(fd, item->name, item->target, TARGET_MAX_BYTES + 1);
        /* empty, too long or holding a NUL: castore cannot hold it, and the caller says so */
        if (item->target_length < 1 || item->target_length > TARGET_MAX_BYTES ||
            memchr(item->target, 0, (size_t)item->target_length))
            return 0;
        item->kind = KIND_SYMLINK;
        return 1;
    }
    return 0; /* a FIFO, socket or device: skipped, by the caller */
}

/* The names (and the types the file system gives) of the directory at `path` into `items`,
 * sorted by their bytes: the directory's descriptor, or -1 when it must be left to the caller.
 * Called without the GIL. */
static int read_names(const char *path, Items *items) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int listing = dup(fd);
    DIR *dir = listing < 0 ? NULL : fdopendir(listing);
    if (!dir) {
        if (listing >= 0)
            close(listing);
        close(fd);
        return -1;
    }
    int ok = 1;
    struct dirent *found;
    while ((found = readdir(dir)) != NULL) {
        const char *name = found->d_name;
        if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
            continue;
        if (items->count == items->capacity) {
            size_t capacity = items->capacity ? items->capacity * 2 : 64;
            Item *grown = realloc(items->items, capacity * sizeof(Item));
            if (!grown) {
                ok = 0;
                break;
            }
            items->items = grown;
            items->capacity = capacity;
        }
        Item *item = &items->items[items->count];
        memset(item, 0, sizeof *item);
        item->length = strlen(name);
        item->name = malloc(item->length + 1);
        if (!item->name) {
            ok = 0;
            break;
        }
        memcpy(item->name, name, item->length + 1);
        item->d_type = found->d_type;
        items->count++;
    }
    closedir(dir);
    if (!ok) {
        close(fd);
        return -1;
    }
    qsort(items->items, items->count, sizeof(Item), by_name);
    return fd;
}

/* Describe every entry, in name order, hashing what was read: 1, or 0 when the directory is left
 * to the caller, or -1 with a Python exception set (the hash type failed). */
static int describe_all(int fd, Items *items, Reads *reads, PyObject *hash_type) {
    PyObject *digest_name = NULL;
    int result = 1;
    for (size_t k = 0; k < items->count; k++) {
        Item *item = &items->items[k];
        Py_ssize_t length;
        int ok;
        Py_BEGIN_ALLOW_THREADS
        ok = describe(fd, item, reads, &length);
        Py_END_ALLOW_THREADS
        if (!ok) {
            result = 0;
            break;
        }
        if (length < 0)
            continue;
        if (!digest_name && !(digest_name = PyUnicode_InternFromString("digest"))) {
            result = -1;
            break;
        }
        if (hash_into(hash_type, digest_name, reads->buffer, length, item->digest) != 0) {
            result = -1;
            break;
        }
        item->kind = KIND_READ;
        reads->budget -= length;
    }
    Py_XDECREF(digest_name);
    return result;
}

/* The listing as Python values: (names, kinds, sizes, executables, targets, digests). */
static PyObject *listing_values(Items *items) {
    PyObject *result = NULL;
    Py_ssize_t count = (Py_ssize_t)items->count, read = 0;
    for (Py_ssize_t k = 0; k < count; k++)
        read += items->items[k].kind == KIND_READ;
    PyObject *names = PyList_New(count), *sizes = PyList_New(count), *targets = PyList_New(0);
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, count), *executables = PyBytes_FromStringAndSize(NULL, count);
    PyObject *digests = PyBytes_FromStringAndSize(NULL, read * DIGEST_BYTES);
    if (!names || !sizes || !targets || !kinds || !executables || !digests)
        goto done;
    char *digest_at = PyBytes_AS_STRING(digests);
    for (Py_ssize_t k = 0; k < count; k++) {
        Item *item = &items->items[k];
        PyObject *name = PyBytes_FromStringAndSize(item->name, (Py_ssize_t)item->length);
        PyObject *size = PyLong_FromLongLong(item->size);
        if (!name || !size) {
            Py_XDECREF(name);
            Py_XDECREF(size);
            goto done;
        }
        PyList_SET_ITEM(names, k, name);
        PyList_SET_ITEM(sizes, k, size);
        PyBytes_AS_STRING(kinds)[k] = item->kind;
        PyBytes_AS_STRING(executables)[k] = (char)item->executable;
        if (item->kind == KIND_READ) {
            memcpy(digest_at, item->digest, DIGEST_BYTES);
            digest_at += DIGEST_BYTES;
        }
        if (item->kind == KIND_SYMLINK) {
            PyObject *target = PyBytes_FromStringAndSize(item->target, item->target_length);
            if (!target || PyList_Append(targets, target) != 0) {
                Py_XDECREF(target);
                goto done;
            }
            Py_DECREF(target);
        }
    }
    result = PyTuple_Pack(6, names, kinds, sizes, executables, targets, digests);
done:
    Py_XDECREF(names);
    Py_XDECREF(sizes);
    Py_XDECREF(targets);
    Py_XDECREF(kinds);
    Py_XDECREF(executables);
    Py_XDECREF(digests);
    return result;
}

PyDoc_STRVAR(list_directory_doc,
    "list_directory(path, limit=-1, buffer=None, hash_type=None, budget=0)\n"
    "    -> None | (names, kinds, sizes, executables, targets, digests)\n\n"
    "The entries of the directory at `path` (bytes, shorter than 2,048 bytes) in byte order of\n"
    "their names: one code per entry in `kinds` (f regular file, r regular file read and hashed,\n"
    "d directory, l symlink), one size (0 but for files) and one execute-bit byte per entry, one\n"
    "target per symlink, 32 bytes of digest per file read. With `limit` >= 0, files of at most\n"
    "`limit` bytes are read whole into `buffer` (writable, longer than `limit`) and hashed with\n"
    "hash_type(view).digest(), in name order, while fewer than `budget` bytes have been read;\n"
    "a file that cannot be read as checked stays f. None when the directory holds anything the\n"
    "caller would leave out or report (see the module's comment), or cannot be listed: the\n"
    "caller lists it its own way.");

static PyObject *list_directory(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *keywords[] = {"path", "limit", "buffer", "hash_type", "budget", NULL};
    const char *path;
    Py_ssize_t path_length;
    Reads reads = {-1, 0, NULL};
    PyObject *buffer_object = Py_None, *hash_type = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#|nOOL:list_directory", keywords, &path, &path_length,
                                     &reads.limit, &buffer_object, &hash_type, &reads.budget))
        return NULL;
    Py_buffer buffer = {0};
    if (reads.limit >= 0) {
        if (hash_type == Py_None) {
            PyErr_SetString(PyExc_ValueError, "reading files needs a hash type");
            return NULL;
        }
        if (PyObject_GetBuffer(buffer_object, &buffer, PyBUF_WRITABLE) != 0)
            return NULL;
        if (buffer.len <= reads.limit) {
            PyBuffer_Release(&buffer);
            PyErr_SetString(PyExc_ValueError, "the buffer must be longer than limit");
            return NULL;
        }
        reads.buffer = buffer.buf;
    }
    PyObject *result = NULL;
    Items items = {NULL, 0, 0};
    if (path_length >= LONGEST_PATH || (Py_ssize_t)strlen(path) != path_length) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    int fd;
    Py_BEGIN_ALLOW_THREADS
    fd = read_names(path, &items);
    Py_END_ALLOW_THREADS
    if (fd < 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    int described = describe_all(fd, &items, &reads, hash_type);
    close(fd);
    if (described > 0)
        result = listing_values(&items);
    else if (described == 0)
        result = Py_NewRef(Py_None);
done:
    free_items(&items);
    if (buffer.obj)
        PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"list_directory", (PyCFunction)(void (*)(void))list_directory, METH_VARARGS | METH_KEYWORDS, list_directory_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "storelab.ingest._listing",
    "List one directory in C (see storelab/ingest/_listing.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__listing(void) { return PyModule_Create(&module); }
