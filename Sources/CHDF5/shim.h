#ifndef DEEPTRAIN_CHDF5_SHIM_H
#define DEEPTRAIN_CHDF5_SHIM_H
#include <hdf5.h>

// H5T_NATIVE_* and the file-access flags are macros that call into the library or cast;
// Swift imports none of them.
static inline hid_t deeptrain_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t deeptrain_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t deeptrain_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t deeptrain_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t deeptrain_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline unsigned deeptrain_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned deeptrain_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned deeptrain_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
// File access for writing: no sieve buffer, so every raw-data write reaches write(2) inside
// H5Dwrite and a full disk fails the call that wrote (buffered, the failure surfaces at close,
// where HDF5 1.10 can lose it and leave holes that read as zeros). The caller closes the list.
static inline hid_t deeptrain_h5p_write_access(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_sieve_buf_size(fapl, 0);
    return fapl;
}
#endif
