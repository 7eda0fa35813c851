#ifndef DEEPTRAIN_CBLAS_SHIM_H
#define DEEPTRAIN_CBLAS_SHIM_H
// Debian's openblas-pthread headers (pkg-config openblas adds their directory).
#include <cblas.h>
#endif
