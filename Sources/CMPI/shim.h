#ifndef DEEPTRAIN_CMPI_SHIM_H
#define DEEPTRAIN_CMPI_SHIM_H
#include <mpi.h>

// Open MPI's handles are macros over addresses of globals, which Swift cannot import:
// expose them as inline getters.
static inline MPI_Comm deeptrain_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm deeptrain_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype deeptrain_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype deeptrain_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype deeptrain_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype deeptrain_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op deeptrain_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op deeptrain_mpi_max(void) { return MPI_MAX; }
static inline void *deeptrain_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler deeptrain_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Datatype deeptrain_mpi_int(void) { return MPI_INT; }
static inline MPI_Status *deeptrain_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *deeptrain_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Request deeptrain_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline int deeptrain_mpi_undefined(void) { return MPI_UNDEFINED; }
static inline MPI_Info deeptrain_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int deeptrain_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int deeptrain_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int deeptrain_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int deeptrain_mpi_any_tag(void) { return MPI_ANY_TAG; }
static inline MPI_Datatype deeptrain_mpi_uint16(void) { return MPI_UINT16_T; }
static inline MPI_Op deeptrain_mpi_min(void) { return MPI_MIN; }
#endif
