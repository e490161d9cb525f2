/* storelab/_c/readfile.h: one small regular file, already open, read whole into a buffer.
 *
 * Included by the C extensions that read files to hash them (storelab/ingest/_smallfiles.c,
 * storelab/ingest/_listing.c). The checks are those of the Python road
 * (storelab.ingest.blobs.BlobHasher.hash_file_into): one read of one byte more than the size
 * (a file that grew shows up as a longer read), then the size and mtime compared with what
 * they were before the read. A file failing any of them is left to the caller, whose Python
 * road reads it again and names what is wrong.
 */
#ifndef STORELAB_READFILE_H
#define STORELAB_READFILE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read the open regular file `fd`, whose fstat before the read is `before`, into `buffer`
 * (capacity > limit): its length, or -1 when it must be left to the caller (larger than
 * `limit`, a read that does not return exactly its size, a size or mtime changed while it was
 * read). Does not close `fd`. Called without the GIL. */
static Py_ssize_t read_whole(int fd, const struct stat *before, char *buffer, Py_ssize_t limit) {
    if (before->st_size > limit)
        return -1;
    ssize_t n = read(fd, buffer, (size_t)before->st_size + 1);
    if (n != (ssize_t)before->st_size)
        return -1;
    struct stat after;
    if (fstat(fd, &after) != 0 || after.st_size != before->st_size ||
        after.st_mtim.tv_sec != before->st_mtim.tv_sec || after.st_mtim.tv_nsec != before->st_mtim.tv_nsec)
        return -1;
    return (Py_ssize_t)n;
}

#endif
