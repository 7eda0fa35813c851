#ifndef DEEPTRAIN_CHDF5_SHIM_H
#define DEEPTRAIN_CHDF5_SHIM_H
#include <hdf5.h>

// H5T_NATIVE_* and the file-access flags are macros that call into the library or cast;
// Swift imports none of them.
static inline hid_t deeptrain_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t deeptrain_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t deeptrain_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t deeptrain_h5t_c_s1(void) { return H5T_C_S1; }
static inline unsigned deeptrain_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned deeptrain_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned deeptrain_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
#endif
