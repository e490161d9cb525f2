/* storelab.ingest._listing: list one directory in C — names in byte order, each entry's kind,
 * a file's size and execute bit, a symlink's target.
 *
 * A binary cache's tree has a directory for every few files: per entry, Python spent more time
 * on the listing (a DirEntry, a sort key, a stat result, the kind checks) than the kernel spent
 * on the system calls. This module makes the same system calls the Python listing makes
 * (open, getdents, an lstat per regular file, faccessat per directory, readlink per symlink),
 * relative to the directory's descriptor, and returns the listing as a few flat values.
 *
 * It is only a faster road to the same listing. A directory holding anything the Python listing
 * would leave out or treat specially (an error of any kind, a FIFO, socket or device, a
 * directory it may not enter, a symlink whose target castore cannot hold, a path too long for
 * one open(2)) is not listed here at all: the caller lists it its own way, and says what it
 * skipped and why. Nothing about errors is decided here.
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

/* As storelab.ingest.tree._PATH_PIECE: longer paths are opened piece by piece, in Python. */
#define LONGEST_PATH 2048
#define TARGET_MAX_BYTES 4095 /* as storelab.castore.nodes.MAX_TARGET_LEN */

#define KIND_FILE 'f'
#define KIND_DIRECTORY 'd'
#define KIND_SYMLINK 'l'

typedef struct {
    char *name; /* NUL-terminated, owned */
    size_t length;
    char kind;
    int executable;
    long long size;
    char *target; /* symlinks: owned, not NUL-terminated */
    ssize_t target_length;
} Item;

typedef struct {
    Item *items;
    size_t count, capacity;
} Items;

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

/* Classify one entry as the Python listing would keep it; 0 when it would not (or any call
 * failed): the whole directory is then left to the caller. */
static int describe(int fd, Item *item, unsigned char d_type) {
    struct stat st;
    if (d_type == DT_UNKNOWN) { /* the file system does not say: ask, as DirEntry.is_file() would */
        if (fstatat(fd, item->name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return 0;
        d_type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    }
    if (d_type == DT_REG) {
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

/* List the directory at `path` into `items`, sorted; 0 when it must be left to the caller.
 * Called without the GIL. */
static int list_into(const char *path, Items *items) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int listing = dup(fd);
    DIR *dir = listing < 0 ? NULL : fdopendir(listing);
    if (!dir) {
        if (listing >= 0)
            close(listing);
        close(fd);
        return 0;
    }
    int ok = 1;
    struct dirent *found;
    while (ok && (found = readdir(dir)) != NULL) {
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
        items->count++;
        ok = describe(fd, item, found->d_type);
    }
    closedir(dir);
    close(fd);
    if (ok)
        qsort(items->items, items->count, sizeof(Item), by_name);
    return ok;
}

PyDoc_STRVAR(list_directory_doc,
    "list_directory(path) -> None | (names, kinds, sizes, executables, targets)\n\n"
    "The entries of the directory at `path` (bytes, shorter than 2,048 bytes) in byte order of\n"
    "their names: one code per entry in `kinds` (f regular file, d directory, l symlink), one size\n"
    "(0 but for files) and one execute-bit byte per entry, one target per symlink. None when the\n"
    "directory holds anything the caller would leave out or report (see the module's comment), or\n"
    "cannot be listed: the caller lists it its own way.");

static PyObject *list_directory(PyObject *self, PyObject *args) {
    (void)self;
    const char *path;
    Py_ssize_t path_length;
    if (!PyArg_ParseTuple(args, "y#:list_directory", &path, &path_length))
        return NULL;
    if (path_length >= LONGEST_PATH || (Py_ssize_t)strlen(path) != path_length)
        Py_RETURN_NONE;
    Items items = {NULL, 0, 0};
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = list_into(path, &items);
    Py_END_ALLOW_THREADS
    if (!ok) {
        free_items(&items);
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    Py_ssize_t count = (Py_ssize_t)items.count;
    PyObject *names = PyList_New(count), *sizes = PyList_New(count), *targets = PyList_New(0);
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, count), *executables = PyBytes_FromStringAndSize(NULL, count);
    if (!names || !sizes || !targets || !kinds || !executables)
        goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        Item *item = &items.items[k];
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
        if (item->kind == KIND_SYMLINK) {
            PyObject *target = PyBytes_FromStringAndSize(item->target, item->target_length);
            if (!target || PyList_Append(targets, target) != 0) {
                Py_XDECREF(target);
                goto done;
            }
            Py_DECREF(target);
        }
    }
    result = PyTuple_Pack(5, names, kinds, sizes, executables, targets);
done:
    free_items(&items);
    Py_XDECREF(names);
    Py_XDECREF(sizes);
    Py_XDECREF(targets);
    Py_XDECREF(kinds);
    Py_XDECREF(executables);
    return result;
}

static PyMethodDef methods[] = {
    {"list_directory", list_directory, METH_VARARGS, list_directory_doc},
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
