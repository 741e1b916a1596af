/* apr.h — the public C API of the apr runtime.
 *
 * This is the only header Lua sees: scripts/gen_ffi.lua turns it into
 * lua/apr/ffi.lua at build time, so it holds only what LuaJIT's ffi.cdef
 * accepts: no macros beyond the guard and includes, no inline functions, no
 * bitfields, no _Float16. Constants are enums.
 *
 * Conventions (docs/c-api.md says more):
 *  - Functions that can fail return apr_status (APR_OK = 0, a negative code
 *    otherwise) and set a thread-local message read by apr_last_error().
 *    Functions returning a pointer return NULL on failure and set the message.
 *  - Handles are opaque and come in pairs: apr_X_open/apr_X_close or
 *    apr_X_new/apr_X_free. Every close/free accepts NULL.
 *  - Out-parameters come last. Strings returned as const char * belong to the
 *    object they came from and live as long as it does.
 */
#ifndef APR_H
#define APR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== */
/* Status codes and errors                                               */
/* ===================================================================== */

typedef enum apr_status {
    APR_OK = 0,
    APR_ERR_INVALID = -1,     /* the caller passed a bad argument */
    APR_ERR_IO = -2,          /* open/read/write/mmap failed */
    APR_ERR_NOMEM = -3,       /* allocation failed or a budget was exceeded */
    APR_ERR_FORMAT = -4,      /* a file's content is malformed */
    APR_ERR_RANGE = -5,       /* an index, id or size is out of range */
    APR_ERR_NOT_FOUND = -6,   /* no such key, tensor or file */
    APR_ERR_UNSUPPORTED = -7, /* well-formed but not handled (type, architecture) */
    APR_ERR_DEVICE = -8,      /* no GPU, or the GPU driver reported a failure */
    APR_ERR_CANCELLED = -9,   /* the operation was stopped on request */
    APR_ERR_BUSY = -10        /* a queue or pool is full; try again later */
} apr_status;

/* The name of a status code ("APR_ERR_FORMAT"); never NULL. */
const char *apr_status_str(apr_status s);

/* The message of the last failure on this thread ("" if none). Valid until the
 * next failing call on the same thread. */
const char *apr_last_error(void);

/* ===================================================================== */
/* Build information                                                     */
/* ===================================================================== */

/* Static strings describing this build; never NULL. */
const char *apr_version(void);       /* "0.1.0" */
const char *apr_git_revision(void);  /* short hash, "+dirty" if modified, or "unknown" */
const char *apr_compiler(void);      /* e.g. "gcc 12.2.0" */
int apr_cuda_compiled(void);         /* 1 if built with the CUDA backend */

/* ===================================================================== */
/* GPU devices (runtime/backend/cuda/device.c)                           */
/* ===================================================================== */

/* A CUDA device as the driver reports it. */
typedef struct apr_device_info {
    char name[256];           /* "NVIDIA H100 80GB HBM3" */
    int index;
    int cc_major, cc_minor;   /* compute capability (9.0 for Hopper) */
    int n_sm;                 /* multiprocessors */
    uint64_t total_bytes;     /* device memory */
    uint64_t free_bytes;      /* of which free now (other processes count too) */
    uint64_t l2_bytes;
    double peak_bandwidth;    /* bytes/s by the memory clock and bus width (datasheet, not measured) */
    int driver_version;       /* CUDA version the driver supports, 1000*major + 10*minor */
    int runtime_version;      /* the CUDA runtime apr was built with */
    int supported;            /* 1 if apr's kernels run on it (compute capability >= 9.0) */
} apr_device_info;

/* CUDA devices present: 0 without a GPU, a driver, or a CUDA build. */
int apr_device_count(void);
/* Describes device index. APR_ERR_RANGE for no such device, APR_ERR_DEVICE
 * when the driver fails; *out is zeroed first. */
apr_status apr_device_get_info(int index, apr_device_info *out);
/* Measures the device-to-device copy bandwidth of device index on a copy of
 * `bytes` (>= 1 MiB; a few GB measures HBM, not the L2): bytes read plus
 * bytes written per second, best of five. Allocates 2 * bytes for the
 * duration. */
apr_status apr_device_copy_bandwidth(int index, uint64_t bytes, double *out);

/* ===================================================================== */
/* GPU monitoring through NVML (runtime/core/nvml.c)                     */
/* ===================================================================== */

/* A GPU as NVML describes it. */
typedef struct apr_gpu_info {
    char name[96];               /* "NVIDIA H100 80GB HBM3" */
    char uuid[96];               /* "GPU-..." */
    char driver_version[80];     /* "550.54.15" */
    int cuda_driver_version;     /* CUDA the driver supports, 1000*major + 10*minor; -1 unknown */
    uint64_t memory_total_bytes;
    int sm_clock_max_mhz;        /* -1 unknown */
} apr_gpu_info;

/* What NVML reports of a GPU at one moment. A figure NVML cannot give on
 * this card is -1. */
typedef struct apr_gpu_sample {
    int utilization_pct;         /* % of the driver's last sample period (1/6 s to 1 s) a kernel ran */
    int memory_utilization_pct;  /* % of it device memory was read or written */
    int sm_clock_mhz;
    int memory_clock_mhz;
    int temperature_c;
    int power_mw;
    uint64_t memory_used_bytes;  /* by every process together */
    uint64_t throttle_reasons;   /* NVML's clocks-event reason bits (0: none; 0x1 idle) */
} apr_gpu_sample;

/* Loads NVML (libnvidia-ml.so.1, or the file $APR_NVML_LIBRARY names) with
 * dlopen, so apr runs where it is absent, and initializes it. Succeeds at
 * once after a first success; a failure is not remembered (a later call
 * tries again). APR_ERR_DEVICE with the reason when there is no library or
 * no driver. */
apr_status apr_nvml_init(void);
/* GPUs NVML sees: 0 until apr_nvml_init has succeeded. */
int apr_nvml_device_count(void);
/* Describes GPU index (NVML's numbering: PCI order, not CUDA_VISIBLE_DEVICES).
 * APR_ERR_RANGE for no such GPU, APR_ERR_DEVICE when NVML fails; *out is
 * zeroed first. */
apr_status apr_nvml_device_info(int index, apr_gpu_info *out);
/* Samples GPU index now (about 1 ms of driver calls). Errors as above. */
apr_status apr_nvml_sample(int index, apr_gpu_sample *out);
/* The compute processes on GPU index and the device memory each holds: up to
 * cap of them into pids[] and bytes[] (bytes -1 as NVML's "not available",
 * which it reports inside some containers); *n is how many there are, which
 * may exceed cap. PIDs are in NVML's namespace, the host's when apr runs in a
 * container of its own. */
apr_status apr_nvml_processes(int index, uint32_t *pids, int64_t *bytes, int cap, int *n);

/* ===================================================================== */
/* Interrupts (Ctrl+C)                                                   */
/* ===================================================================== */

/* Installs the SIGINT handler: the first Ctrl+C sets a flag, a second one
 * before the flag is cleared kills the process. Called once by `apr`'s main. */
void apr_interrupt_install(void);
/* 1 if Ctrl+C was pressed since the last apr_interrupt_clear(). Long-running
 * runtime functions poll it and return APR_ERR_CANCELLED. */
int apr_interrupted(void);
void apr_interrupt_clear(void);

/* ===================================================================== */
/* Terminal and memory returned to callers                               */
/* ===================================================================== */

/* Frees memory that an apr function documents as the caller's to free. */
void apr_free(void *p);

int apr_term_isatty(int fd);
/* Reads one line from stdin (without its newline), with line editing and
 * history when stdin is a terminal and GNU readline is installed. Returns a
 * string to release with apr_free, or NULL at end of input. On a terminal,
 * Ctrl+C (apr_interrupt_install's handler) drops what was typed and returns
 * "" with apr_interrupted() set; the caller clears it. */
char *apr_term_readline(const char *prompt);
void apr_term_add_history(const char *line);
void apr_term_load_history(const char *path);  /* missing file: no-op */
void apr_term_save_history(const char *path);

/* ===================================================================== */
/* Element types and block formats (runtime/core/quant.c)                */
/* ===================================================================== */

/* The numbering is GGUF's (ggml_type), so a tensor's type field in a file
 * maps to this enum unchanged. Block formats store `block_size` elements in
 * `block_bytes` bytes; docs/quant-formats.md gives each layout. */
typedef enum apr_dtype {
    APR_F32 = 0,
    APR_F16 = 1,
    APR_Q4_0 = 2,
    APR_Q4_1 = 3,
    APR_Q5_0 = 6,
    APR_Q5_1 = 7,
    APR_Q8_0 = 8,
    APR_Q8_1 = 9,
    APR_Q2_K = 10,
    APR_Q3_K = 11,
    APR_Q4_K = 12,
    APR_Q5_K = 13,
    APR_Q6_K = 14,
    APR_Q8_K = 15,
    APR_I8 = 24,
    APR_I16 = 25,
    APR_I32 = 26,
    APR_I64 = 27,
    APR_F64 = 28,
    APR_BF16 = 30,
    APR_DTYPE_COUNT = 40
} apr_dtype;

/* "Q4_K", "F16", ...; NULL for a number that is no type apr knows. */
const char *apr_dtype_name(int dtype);
/* Elements per block (1 for plain types) and bytes per block; 0 if unknown. */
int64_t apr_dtype_block_size(int dtype);
int64_t apr_dtype_block_bytes(int dtype);
/* Bytes of n elements; fails (APR_ERR_FORMAT) if n is not a whole number of
 * blocks or the product overflows, and APR_ERR_UNSUPPORTED for unknown types. */
apr_status apr_dtype_nbytes(int dtype, int64_t n, uint64_t *out);
/* 1 if apr can dequantize this type (to f32), 0 otherwise. */
int apr_dtype_can_dequantize(int dtype);
int apr_dtype_can_quantize(int dtype);

/* Converts n elements (a whole number of blocks) of src, in format dtype, to
 * float32 in dst. Exact: bit for bit what the format defines. */
apr_status apr_dequantize(int dtype, const void *src, float *dst, int64_t n);
/* Converts n float32 values to format dtype (round to nearest, the scales
 * chosen as llama.cpp's reference quantizer does). */
apr_status apr_quantize(int dtype, const float *src, void *dst, int64_t n);

/* Statistics of n dequantized elements, computed on all cores. */
typedef struct apr_stats {
    double min, max, mean, std;  /* over the finite elements */
    int64_t n, n_nan, n_inf;
} apr_stats;
apr_status apr_tensor_stats(int dtype, const void *data, int64_t n, apr_stats *out);
/* std is the population standard deviation (divided by the count of finite
 * elements); with no finite element min/max/mean/std are NaN. The result does
 * not depend on the thread count. APR_ERR_CANCELLED if Ctrl+C stopped it. */

/* How two tensors of n elements differ (runtime/core/compare.c). */
typedef struct apr_compare {
    int64_t n_diff;            /* elements whose values differ (whole blocks of differing bytes where
                                  values cannot be measured); 0: the same values */
    int64_t first_diff;        /* the first such element, -1 if none */
    double max_abs_diff;       /* the largest |a - b| of the dequantized values (0 if none differ) */
    int64_t nan_mismatch;      /* elements NaN on one side only (not in max_abs_diff) */
    int measured;              /* 1 if the values were dequantized (else only bytes were compared) */
    int bit_equal;             /* 1 if the types are the same and every byte is */
} apr_compare;
/* Compares n elements of a (type_a) with n of b (type_b), on all cores.
 * Same types: block bytes first (bit-equal blocks are equal), differing
 * blocks dequantized to measure them. Different types: dequantized values.
 * APR_ERR_UNSUPPORTED when the types differ and one cannot be dequantized;
 * APR_ERR_INVALID when n is not a whole number of either's blocks. */
apr_status apr_tensor_compare(int type_a, const void *a, int type_b, const void *b, int64_t n, apr_compare *out);

/* Scans n elements for NaN and Inf where they would poison values: every
 * value of F32/F16/BF16/F64 data, the float scale fields (d, dmin, m, s) of
 * every block of a block format. APR_OK with *first_bad_element = -1 if all
 * are finite; APR_ERR_FORMAT with the index of the first element of the first
 * bad block (or the bad element) and a message naming the block and field;
 * APR_ERR_UNSUPPORTED for formats whose scales apr does not know (IQ*);
 * APR_ERR_CANCELLED on Ctrl+C. Integer types are always finite. Runs on all
 * cores. */
apr_status apr_dtype_check_finite(int dtype, const void *data, int64_t n, int64_t *first_bad_element);

/* Memory for tensors that Lua owns: nbytes (> 0) zeroed bytes aligned to 64,
 * to release with apr_free. NULL (APR_ERR_NOMEM) when allocation fails. */
void *apr_alloc(size_t nbytes);

/* ===================================================================== */
/* Whole files (runtime/core/file.c)                                     */
/* ===================================================================== */

/* Reads the file at path into memory; a name ending in ".zst" is
 * decompressed (zstd, all frames). *bytes gets the content plus one NUL past
 * the end, to release with apr_free; *len its length. APR_ERR_NOT_FOUND /
 * APR_ERR_IO / APR_ERR_FORMAT (bad zstd) with a message naming the path. */
apr_status apr_file_read(const char *path, char **bytes, uint64_t *len);

/* ===================================================================== */
/* GGUF files (runtime/formats/gguf.c)                                   */
/* ===================================================================== */

/* An open GGUF file: memory-mapped read-only, header parsed and validated.
 * Every count, length, offset and dimension was checked against the file
 * size and for overflow when it was opened, so nothing below can read out of
 * bounds. */
typedef struct apr_gguf apr_gguf;

/* GGUF metadata value types (the numbering is the file format's). */
typedef enum apr_gguf_type {
    APR_GGUF_UINT8 = 0,
    APR_GGUF_INT8 = 1,
    APR_GGUF_UINT16 = 2,
    APR_GGUF_INT16 = 3,
    APR_GGUF_UINT32 = 4,
    APR_GGUF_INT32 = 5,
    APR_GGUF_FLOAT32 = 6,
    APR_GGUF_BOOL = 7,
    APR_GGUF_STRING = 8,
    APR_GGUF_ARRAY = 9,
    APR_GGUF_UINT64 = 10,
    APR_GGUF_INT64 = 11,
    APR_GGUF_FLOAT64 = 12
} apr_gguf_type;

/* One metadata value, pointing into the mapping (valid while the file is
 * open). Scalars: `data` points at the little-endian value. Strings: `data`
 * at the bytes (not NUL-terminated), `len` their count. Arrays: `elem_type`
 * is the element type, `len` the element count, and `data` the first
 * element; elements of fixed size are packed, so `data` can be read as an
 * array (it may be unaligned: C code copies with memcpy); string and array
 * elements are reached with apr_gguf_array_get. */
typedef struct apr_gguf_value {
    int type;
    int elem_type;
    uint64_t len;
    const void *data;
    uint64_t size;   /* bytes the value spans in the file */
    int64_t index;   /* reader-internal: which array this is (-1 if none) */
} apr_gguf_value;

/* A tensor of the file. ne[0] is the innermost (contiguous) dimension, as in
 * GGUF; dimensions past n_dims are 1. */
typedef struct apr_gguf_tensor_info {
    const char *name;     /* NUL-terminated copy owned by the file */
    int type;             /* apr_dtype */
    int n_dims;
    int64_t ne[4];
    uint64_t offset;      /* from the start of the data section */
    uint64_t nbytes;
    const void *data;     /* in the mapping */
} apr_gguf_tensor_info;

/* Opens and validates path. On failure *out is NULL and the message names the
 * file, the problem and its byte offset. */
apr_status apr_gguf_open(const char *path, apr_gguf **out);
/* The same for a GGUF image in memory (size bytes at data), validated the
 * same way; messages name it "<memory>". The bytes are not copied: they must
 * outlive the file. Used by the fuzzer and by tests. */
apr_status apr_gguf_open_memory(const void *data, size_t size, apr_gguf **out);
void apr_gguf_close(apr_gguf *f);

uint32_t apr_gguf_version(const apr_gguf *f);
uint64_t apr_gguf_file_size(const apr_gguf *f);
uint64_t apr_gguf_alignment(const apr_gguf *f);
uint64_t apr_gguf_data_offset(const apr_gguf *f);   /* start of the tensor data */
uint64_t apr_gguf_header_size(const apr_gguf *f);   /* end of the tensor infos (<= data offset) */
const char *apr_gguf_path(const apr_gguf *f);        /* as opened; "<memory>" for open_memory */
const void *apr_gguf_base(const apr_gguf *f);        /* the mapping's first byte */

int64_t apr_gguf_n_kv(const apr_gguf *f);
/* The i-th key (0 <= i < n_kv) and its value; APR_ERR_RANGE for a bad i. */
apr_status apr_gguf_kv(const apr_gguf *f, int64_t i, const char **key, apr_gguf_value *out);
/* Index of key, or -1 if absent. */
int64_t apr_gguf_find_kv(const apr_gguf *f, const char *key);
/* Element i of an array value (any element type, nested arrays included). */
apr_status apr_gguf_array_get(const apr_gguf *f, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out);

/* Typed lookups for the common case: fail with APR_ERR_NOT_FOUND when the key
 * is absent, APR_ERR_FORMAT when its type does not convert (any integer type
 * converts to int64 if it fits; float32/float64 to double). The string is
 * NUL-terminated and owned by the file. */
apr_status apr_gguf_get_int(const apr_gguf *f, const char *key, int64_t *out);
apr_status apr_gguf_get_float(const apr_gguf *f, const char *key, double *out);
apr_status apr_gguf_get_bool(const apr_gguf *f, const char *key, int *out);
apr_status apr_gguf_get_str(const apr_gguf *f, const char *key, const char **out);

int64_t apr_gguf_n_tensors(const apr_gguf *f);
apr_status apr_gguf_tensor(const apr_gguf *f, int64_t i, apr_gguf_tensor_info *out);
/* Index of the tensor called name, or -1 if absent. */
int64_t apr_gguf_find_tensor(const apr_gguf *f, const char *name);

/* ===================================================================== */
/* Model sources (runtime/formats/source.c; formats: formats/source.h)   */
/* ===================================================================== */

/* A model file of any container apr reads, behind one interface: metadata
 * by key, the tensor table, and each tensor's bytes. apr_source_open picks
 * the container by the file's first bytes: GGUF, as one file or as a split
 * set (NAME-00001-of-0000N.gguf, llama.cpp's gguf-split: opened from its
 * first part, read as one model), and the formats formats/source.h lists.
 * The model loader, the tokenizer and the Lua side (apr.open, info,
 * inspect, verify) see files only through this interface.
 *
 * Everything is validated at open (counts, sizes, offsets, names), so
 * nothing below reads outside the files. Queries (metadata, the tensor
 * table, apr_source_tensor_read) are safe from any number of threads;
 * apr_source_tensor_data and _release have the rule stated on them. Strings
 * and values returned point into the source and live until it is closed. */
typedef struct apr_source apr_source;

/* What a source is. */
typedef struct apr_source_info {
    const char *format;       /* "GGUF" (or another container's name) */
    uint32_t version;         /* the container's version (GGUF: 2 or 3) */
    int n_files;              /* 1, or the number of parts of a split model */
    uint64_t size;            /* bytes of all its files together */
    int64_t n_kv;             /* metadata keys */
    int64_t n_tensors;        /* tensors of all its files together */
    uint64_t alignment;       /* of tensor data in the file (GGUF: general.alignment, 32), 0 if none */
    uint64_t data_offset;     /* where the first file's tensor data starts, 0 if it has no such section */
} apr_source_info;

/* One tensor of a source. ne[0] is the innermost (contiguous) dimension, as
 * in GGUF; dimensions past n_dims are 1. */
typedef struct apr_tensor_info {
    const char *name;         /* NUL-terminated, owned by the source */
    int type;                 /* apr_dtype */
    int n_dims;               /* 1..4 */
    int64_t ne[4];
    uint64_t nbytes;          /* its bytes as apr computes with them (apr_source_tensor_data's size) */
    int file;                 /* which file holds it: 0, or the part of a split model */
    uint64_t offset;          /* its stored bytes, from the start of that file's data section (GGUF's offset) */
    uint64_t file_offset;     /* the same from the file's first byte */
    uint64_t stored_bytes;    /* bytes it takes in the file: nbytes when stored as is, less when compressed */
    const char *codec;        /* how it is stored: "none" (as is), else the container's codec ("lz4", "zstd") */
    uint64_t chunk_bytes;     /* decoded bytes per stored chunk (the last may be shorter): reads of ranges
                                 aligned to it decode each chunk once; 0 when stored as is (any range is free) */
    int mapped;               /* 1: apr_source_tensor_data points into the file's mapping (no copy, no decode) */
} apr_tensor_info;

/* Opens path: checks it is a regular file (a FIFO or a directory fails at
 * once, core/file.h), reads its first bytes to pick the container, and
 * opens and validates it. A split GGUF model is opened from its first part
 * and needs every part beside it; opening another part fails and names the
 * first. On failure *out is NULL and the one-line message names the file,
 * the problem and where it is. Close with apr_source_close. */
apr_status apr_source_open(const char *path, apr_source **out);
/* The same for an image of size bytes at data (one file; not copied: the
 * bytes must outlive the source); messages call it "<memory>". */
apr_status apr_source_open_memory(const void *data, size_t size, apr_source **out);
void apr_source_close(apr_source *s);

void apr_source_get_info(const apr_source *s, apr_source_info *out);
/* The path it was opened with ("<memory>" for memory images). */
const char *apr_source_path(const apr_source *s);
/* File k (0 <= k < n_files): its path and its bytes as stored on disk
 * (mapped read-only, for whole-file checksums). APR_ERR_RANGE for a bad k. */
apr_status apr_source_file(const apr_source *s, int k, const char **path, const void **bytes, uint64_t *size);
/* The GGUF file behind part k of a GGUF source (NULL for another container
 * or a bad k): for GGUF-specific work such as apr_gguf_copy. The model code
 * never needs it. */
const apr_gguf *apr_source_gguf(const apr_source *s, int k);

/* --- metadata ---------------------------------------------------------- */
/* Values are typed as GGUF types them (apr_gguf_type, apr_gguf_value),
 * whatever the container: apr's containers keep GGUF metadata verbatim. */
int64_t apr_source_n_kv(const apr_source *s);
/* The i-th key (0 <= i < n_kv) and its value; APR_ERR_RANGE for a bad i. */
apr_status apr_source_kv(const apr_source *s, int64_t i, const char **key, apr_gguf_value *out);
/* Index of key, or -1 if absent. */
int64_t apr_source_find_kv(const apr_source *s, const char *key);
/* Element i of an array value from this source (any element type, nested
 * arrays included); APR_ERR_RANGE for i >= len. */
apr_status apr_source_array_get(const apr_source *s, const apr_gguf_value *array, uint64_t i, apr_gguf_value *out);
/* Typed lookups: APR_ERR_NOT_FOUND when the key is absent, APR_ERR_FORMAT
 * when its type does not convert (any integer type to int64 if it fits;
 * float32/float64 to double; a string holding a NUL byte). Messages name
 * the file and the key. The string is NUL-terminated and owned by the
 * source. */
apr_status apr_source_get_int(const apr_source *s, const char *key, int64_t *out);
apr_status apr_source_get_float(const apr_source *s, const char *key, double *out);
apr_status apr_source_get_bool(const apr_source *s, const char *key, int *out);
apr_status apr_source_get_str(const apr_source *s, const char *key, const char **out);
/* An array value whose elements are of elem_type (an apr_gguf_type; -1:
 * any), read with apr_source_array_get, or for fixed-size elements straight
 * from out->data (packed, maybe unaligned: memcpy). APR_ERR_NOT_FOUND when
 * absent, APR_ERR_FORMAT when not such an array. */
apr_status apr_source_get_array(const apr_source *s, const char *key, int elem_type, apr_gguf_value *out);

/* --- tensors ----------------------------------------------------------- */
int64_t apr_source_n_tensors(const apr_source *s);
/* Tensor i (0 <= i < n_tensors; split models: the first part's tensors,
 * then the second's, ...); APR_ERR_RANGE for a bad i. */
apr_status apr_source_tensor(const apr_source *s, int64_t i, apr_tensor_info *out);
/* Index of the tensor called name, or -1 if absent. */
int64_t apr_source_find_tensor(const apr_source *s, const char *name);

/* --- tensor bytes ------------------------------------------------------ */
/* The whole of tensor i (nbytes), borrowed. A mapped tensor (info.mapped)
 * is a pointer into the file's mapping, valid until the source is closed.
 * Any other is decoded whole into a buffer the source owns, valid until
 * apr_source_tensor_release(s, i) or the close. Calls for different
 * tensors may run on different threads at once; not so for the same i, nor
 * with its release. Fails (nothing kept) with APR_ERR_RANGE for a bad i,
 * APR_ERR_NOMEM, or APR_ERR_FORMAT naming the tensor and chunk whose stored
 * bytes are corrupt (a checksum, a codec error). */
apr_status apr_source_tensor_data(apr_source *s, int64_t i, const void **data);
/* Copies bytes [offset, offset + n) of tensor i, as apr_source_tensor_data
 * would give them, into dst (the caller's memory: a staging buffer, pinned
 * or not). A compressed tensor decodes only the chunks the range touches
 * (ranges aligned to info.chunk_bytes decode each chunk once), never the
 * whole tensor, and nothing is kept. Safe from any number of threads at
 * once, on any tensors: the loader reads chunks in parallel. APR_ERR_RANGE
 * for a bad i or a range past the tensor's end; otherwise as
 * apr_source_tensor_data. */
apr_status apr_source_tensor_read(apr_source *s, int64_t i, uint64_t offset, void *dst, uint64_t n);
/* Frees what apr_source_tensor_data decoded for tensor i (nothing for a
 * mapped tensor or a bad i); pointers it gave for i become invalid. */
void apr_source_tensor_release(apr_source *s, int64_t i);

/* ===================================================================== */
/* Writing GGUF files (runtime/formats/gguf_write.c)                     */
/* ===================================================================== */

/* A GGUF file being written: metadata and tensor infos are gathered first,
 * then apr_gguf_writer_begin lays the file out, writes the header and sizes
 * the file, and the tensor data is filled in afterwards, in any order and
 * from any number of threads (apr_gguf_writer_write is a pwrite), so a 20 GB
 * file is never held in memory. Mistakes (a duplicate key, an unknown type,
 * a call out of order) fail with APR_ERR_INVALID and leave the writer as it
 * was. */
typedef struct apr_gguf_writer apr_gguf_writer;

/* An empty writer for GGUF version 3 with the default alignment (32). The
 * caller frees it with apr_gguf_writer_free. */
apr_status apr_gguf_writer_new(apr_gguf_writer **out);
/* Frees w. A file that was begun but not finished is removed, so a failed
 * or interrupted write never leaves a plausible-looking file behind. */
void apr_gguf_writer_free(apr_gguf_writer *w);
/* 2 or 3 (the encodings are identical for little-endian files). */
apr_status apr_gguf_writer_set_version(apr_gguf_writer *w, uint32_t version);

/* Metadata, in file order. Keys are non-empty and unique. Setting
 * general.alignment (a uint32 power of two) sets the layout's alignment. */
/* An integer of type UINT8..INT64 or BOOL (0/1), range-checked. */
apr_status apr_gguf_writer_add_int(apr_gguf_writer *w, const char *key, int type, int64_t value);
/* FLOAT32 or FLOAT64. */
apr_status apr_gguf_writer_add_float(apr_gguf_writer *w, const char *key, int type, double value);
/* len bytes of any content (NUL bytes included). */
apr_status apr_gguf_writer_add_str(apr_gguf_writer *w, const char *key, const char *s, uint64_t len);
/* An array of n fixed-size elements stored packed at elems (elem_type is
 * not STRING or ARRAY). */
apr_status apr_gguf_writer_add_array(apr_gguf_writer *w, const char *key, int elem_type, const void *elems,
                                     uint64_t n);
/* An array of n strings; lens NULL means each is NUL-terminated. */
apr_status apr_gguf_writer_add_str_array(apr_gguf_writer *w, const char *key, const char *const *strs,
                                         const uint64_t *lens, uint64_t n);
/* A value of any type given as its encoding (the bytes after the type tag,
 * nested arrays included); checked as the reader would check it. */
apr_status apr_gguf_writer_add_raw(apr_gguf_writer *w, const char *key, int type, const void *bytes,
                                   uint64_t size);
/* A value read from an open file (apr_gguf_kv, apr_gguf_array_get). */
apr_status apr_gguf_writer_add_value(apr_gguf_writer *w, const char *key, const apr_gguf_value *v);

/* A tensor of n_dims (1..4) dimensions ne (GGUF order, ne[0] innermost) and
 * type dtype; its data goes at the next aligned offset after the previous
 * tensor's. */
apr_status apr_gguf_writer_add_tensor(apr_gguf_writer *w, const char *name, int dtype, int n_dims,
                                      const int64_t *ne);
/* The same at a given offset from the start of the data section (aligned,
 * overlapping no other tensor): for copying a file's layout exactly. */
apr_status apr_gguf_writer_add_tensor_at(apr_gguf_writer *w, const char *name, int dtype, int n_dims,
                                         const int64_t *ne, uint64_t offset);

/* Fixes the layout (no more keys or tensors after this). Called by begin;
 * call it earlier to read the sizes below before creating the file. */
apr_status apr_gguf_writer_layout(apr_gguf_writer *w);
int64_t apr_gguf_writer_n_tensors(const apr_gguf_writer *w);
/* After layout: where tensor i's data starts in the file (absolute byte
 * offset) and its size; the data section's start and the file's size.
 * 0 for a bad i or before layout. */
uint64_t apr_gguf_writer_tensor_offset(const apr_gguf_writer *w, int64_t i);
uint64_t apr_gguf_writer_tensor_nbytes(const apr_gguf_writer *w, int64_t i);
uint64_t apr_gguf_writer_data_offset(const apr_gguf_writer *w);
uint64_t apr_gguf_writer_file_size(const apr_gguf_writer *w);
/* The header and its padding (data_offset bytes) in memory, to release with
 * apr_free: for tests, or for a caller that writes the file itself. */
apr_status apr_gguf_writer_header(apr_gguf_writer *w, void **bytes, uint64_t *size);

/* Creates path (replacing a file there), writes the header and padding and
 * extends the file to its final size, so every tensor's bytes exist (zeros
 * until written). APR_ERR_IO names the path on failure. */
apr_status apr_gguf_writer_begin(apr_gguf_writer *w, const char *path);
/* Writes n bytes of tensor i's data at byte `at` of that tensor (at + n <=
 * its size). Safe to call from several threads at once. */
apr_status apr_gguf_writer_write(apr_gguf_writer *w, int64_t i, uint64_t at, const void *data, uint64_t n);
/* The open file's descriptor after begin (-1 otherwise), for callers that
 * mmap it or pwrite at apr_gguf_writer_tensor_offset themselves. */
int apr_gguf_writer_fd(const apr_gguf_writer *w);
/* Flushes and closes the file; fails with APR_ERR_IO (disk full, ...). */
apr_status apr_gguf_writer_finish(apr_gguf_writer *w);

/* A writer holding f's version, metadata and tensor layout, ready for
 * apr_gguf_writer_begin. */
apr_status apr_gguf_writer_from_file(const apr_gguf *f, apr_gguf_writer **out);
/* Writes f to path byte for byte: header re-encoded by the writer, data
 * section (padding included) copied. Refuses to overwrite f's own file. */
apr_status apr_gguf_copy(const apr_gguf *f, const char *path);

/* ===================================================================== */
/* Synthetic models (runtime/formats/synth.c)                            */
/* ===================================================================== */

/* Writes random data into tensor i of w (after apr_gguf_writer_begin): n
 * elements of type dtype, which must be what the tensor was added with.
 * F32/F16/BF16 values get the given mean and standard deviation
 * (approximately normal, bounded by 3.5 std); Q8_0, Q4_0, Q5_0, Q4_K and
 * Q6_K get random blocks whose decoded values have mean 0 (mean must be 0)
 * and that std. The bytes depend only on (seed, i), not on the thread
 * count. Runs on all cores; APR_ERR_CANCELLED on Ctrl+C, APR_ERR_IO from
 * the writer, APR_ERR_UNSUPPORTED for other types. */
apr_status apr_synth_fill(apr_gguf_writer *w, int64_t i, int dtype, int64_t n, double mean, double std,
                          uint64_t seed);

/* ===================================================================== */
/* SHA-256 (runtime/core/sha256.c)                                       */
/* ===================================================================== */

/* An incremental SHA-256 (FIPS 180-4): feed the bytes in any number of
 * pieces, then read the digest. */
typedef struct apr_sha256 apr_sha256;

/* A fresh hash state, or NULL (out of memory); free it with apr_sha256_free. */
apr_sha256 *apr_sha256_new(void);
void apr_sha256_free(apr_sha256 *h);
/* Starts over, as if new. */
void apr_sha256_reset(apr_sha256 *h);
void apr_sha256_update(apr_sha256 *h, const void *data, size_t n);
/* Writes the digest of everything fed so far: 32 bytes to digest, or 64
 * lower-case hex digits and a NUL to hex (either may be NULL). The state is
 * then reset. */
void apr_sha256_final(apr_sha256 *h, uint8_t *digest, char *hex);

/* ===================================================================== */
/* APR v2 files (runtime/formats/apr*.c, docs/apr-format.md)             */
/* ===================================================================== */

/* An open APR file: memory-mapped read-only; header, metadata, index and
 * trailer validated when it was opened (docs/apr-format.md, "Rules the
 * reader checks"), so nothing below reads outside the mapping. Chunk
 * checksums are checked when a chunk is read. */
typedef struct apr_aprf apr_aprf;

/* How a tensor's chunks are compressed (the numbering is the format's). */
typedef enum apr_codec {
    APR_CODEC_NONE = 0,
    APR_CODEC_LZ4 = 1,
    APR_CODEC_ZSTD = 2
} apr_codec;

/* What is done to a chunk before compression. */
typedef enum apr_filter {
    APR_FILTER_NONE = 0,
    APR_FILTER_BYTEPLANE = 1,  /* byte j of every block together, then byte j + 1 */
    APR_FILTER_AUTO = -1       /* writer only: byte planes with zstd, none with lz4 */
} apr_filter;

typedef struct apr_aprf_tensor_info {
    const char *name;          /* NUL-terminated copy owned by the file */
    int type;                  /* apr_dtype */
    int n_dims;
    int64_t ne[4];
    uint64_t nbytes;           /* raw bytes */
    int codec;                 /* apr_codec */
    int filter;                /* apr_filter */
    int level;                 /* the codec level the writer used */
    uint64_t stored_bytes;     /* its chunks' stored bytes, added up */
    uint64_t source_offset;    /* in the source GGUF's data section */
    int64_t first_chunk;       /* index of its first chunk record */
    uint32_t n_chunks;
    uint32_t chunk_bytes;      /* raw bytes of every chunk but the last */
    const void *data;          /* codec none: the bytes, in the mapping; else NULL */
} apr_aprf_tensor_info;

typedef struct apr_aprf_chunk_info {
    uint64_t offset;           /* of its stored bytes in the file */
    uint32_t stored, raw;      /* stored == raw: kept as is */
    uint64_t checksum;         /* XXH3-64 of the raw bytes */
} apr_aprf_chunk_info;

/* Opens and validates path. On failure *out is NULL and the message names
 * the file and the part (the tensor and chunk where one is at fault). */
apr_status apr_aprf_open(const char *path, apr_aprf **out);
/* The same for an image in memory (not copied: it must outlive the file);
 * messages name it "<memory>". Used by the fuzzer and by tests. */
apr_status apr_aprf_open_memory(const void *data, size_t size, apr_aprf **out);
void apr_aprf_close(apr_aprf *f);

const char *apr_aprf_path(const apr_aprf *f);
uint32_t apr_aprf_version(const apr_aprf *f);
uint64_t apr_aprf_file_size(const apr_aprf *f);
const void *apr_aprf_base(const apr_aprf *f);          /* the mapping's first byte */
/* The source GGUF's header, parsed: its keys and values (apr_gguf_kv and the
 * typed lookups) and tensor infos, whose `data` is NULL. Owned by f. */
const apr_gguf *apr_aprf_metadata(const apr_aprf *f);
uint64_t apr_aprf_gguf_size(const apr_aprf *f);      /* bytes of the GGUF it converts back to */
/* Bytes of the file before the trailer: what the file SHA-256 covers. */
uint64_t apr_aprf_hashed_size(const apr_aprf *f);
/* 64 hex digits and a NUL: the SHA-256 the trailer records for the file's
 * bytes before it, and for the source GGUF (returns 0 and writes "" when
 * the writer did not know it). */
void apr_aprf_file_sha256(const apr_aprf *f, char *hex);
int apr_aprf_source_sha256(const apr_aprf *f, char *hex);

int64_t apr_aprf_n_tensors(const apr_aprf *f);
int64_t apr_aprf_n_chunks(const apr_aprf *f);
/* Tensor i, in the source GGUF's tensor-info order; APR_ERR_RANGE for a bad i. */
apr_status apr_aprf_tensor(const apr_aprf *f, int64_t i, apr_aprf_tensor_info *out);
int64_t apr_aprf_find_tensor(const apr_aprf *f, const char *name);
/* Chunk c (0 <= c < n_chunks) of tensor i. */
apr_status apr_aprf_chunk(const apr_aprf *f, int64_t i, uint32_t c, apr_aprf_chunk_info *out);

/* Scratch bytes apr_aprf_read_chunk may need (twice the largest chunk). */
uint64_t apr_aprf_scratch_bytes(const apr_aprf *f);
/* Decodes chunk c of tensor i into dst (its raw size) and checks its
 * checksum; with dst NULL only checks. `scratch` (apr_aprf_scratch_bytes)
 * may be NULL when dst is given and the tensor has no filter. Safe to call
 * from many threads at once. APR_ERR_FORMAT names the tensor and chunk when
 * the bytes do not decode or do not match their checksum. */
apr_status apr_aprf_read_chunk(const apr_aprf *f, int64_t i, uint32_t c, void *dst, void *scratch);
/* Decodes all of tensor i into dst (nbytes), its chunks on up to `threads`
 * threads of the worker pool (<= 0: all), checking each chunk's checksum;
 * with dst NULL only checks. For a codec-none tensor this copies (or only
 * checks) the mapping's bytes. */
apr_status apr_aprf_read_tensor(const apr_aprf *f, int64_t i, void *dst, int threads);

/* The APR file behind a model source (apr_source_open of an APR file), or
 * NULL for another container: for what only APR has (chunks, digests). */
const apr_aprf *apr_source_aprf(const apr_source *s);

const char *apr_codec_name(int codec);    /* "none", "lz4", "zstd"; NULL for others */
const char *apr_filter_name(int filter);  /* "none", "byteplane"; NULL for others */
/* The checksum an APR file records for n bytes (XXH3-64, seed 0). */
uint64_t apr_aprf_checksum(const void *data, size_t n);

/* Writing APR files from GGUF (runtime/formats/apr_write.c). A conversion
 * is a job the caller steps, so it can show progress and stop on Ctrl+C:
 *
 *   apr_aprf_writer_new(src, "out.apr", &params, &w);
 *   while (!progress.finished) apr_aprf_writer_step(w, &progress);
 *   apr_aprf_writer_finish(w);   then apr_aprf_writer_free(w);
 *
 * The file is written to a temporary name beside the output (OUT.tmp.PID)
 * and renamed onto OUT by finish; a job freed before finish removes it, so
 * a failed or interrupted conversion leaves nothing under OUT. */
typedef struct apr_aprf_writer apr_aprf_writer;

typedef struct apr_aprf_write_params {
    int codec;                 /* apr_codec */
    int level;                 /* 0: the codec's default (lz4 1, zstd 3) */
    int filter;                /* apr_filter (APR_FILTER_AUTO by default) */
    int threads;               /* <= 0: the worker pool's */
    uint32_t chunk_bytes;      /* 0: 2 MiB; at most 4 MiB (rounded down to whole blocks) */
    const char *source_sha256; /* the source's digest if known (64 hex digits), else NULL: computed */
} apr_aprf_write_params;

/* Where a job stands: bytes of tensor data done of total. */
typedef struct apr_aprf_progress {
    uint64_t done, total;
    int finished;              /* every chunk is written: call finish */
} apr_aprf_progress;

void apr_aprf_write_params_default(apr_aprf_write_params *p);
/* Starts converting the open GGUF src (which must outlive the job) to path. */
apr_status apr_aprf_writer_new(const apr_gguf *src, const char *path, const apr_aprf_write_params *p,
                               apr_aprf_writer **out);
/* Compresses and writes the next window of chunks (tens of MB); fills
 * *progress. APR_ERR_CANCELLED after Ctrl+C. After a failure the job can
 * only be freed. */
apr_status apr_aprf_writer_step(apr_aprf_writer *w, apr_aprf_progress *progress);
/* Writes the gaps, index and trailer, syncs and renames onto the output. */
apr_status apr_aprf_writer_finish(apr_aprf_writer *w);
/* The digests finish recorded (64 hex digits and a NUL each). */
void apr_aprf_writer_digests(const apr_aprf_writer *w, char *file_sha256, char *source_sha256);
uint64_t apr_aprf_writer_file_size(const apr_aprf_writer *w);
/* Frees the job; before finish it also removes the temporary file. */
void apr_aprf_writer_free(apr_aprf_writer *w);

/* Writing the GGUF an APR file came from (runtime/formats/apr_export.c):
 * stepped like the writer, with the same temporary name and rename. Finish
 * fails (and leaves nothing under path) when the SHA-256 of what was
 * written differs from the source's recorded one. */
typedef struct apr_aprf_export apr_aprf_export;

apr_status apr_aprf_export_new(const apr_aprf *f, const char *path, int threads, apr_aprf_export **out);
apr_status apr_aprf_export_step(apr_aprf_export *x, apr_aprf_progress *progress);
apr_status apr_aprf_export_finish(apr_aprf_export *x);
/* The SHA-256 of the GGUF written (valid after finish). */
void apr_aprf_export_sha256(const apr_aprf_export *x, char *hex);
void apr_aprf_export_free(apr_aprf_export *x);

/* ===================================================================== */
/* Tokenizer (runtime/model/tokenizer.c, detok.c)                        */
/* ===================================================================== */

/* A byte-level BPE tokenizer built from a model file's tokenizer.ggml.*
 * metadata (docs/tokenizer.md). It copies what it needs, so the file may be
 * closed afterwards. Immutable once built: any number of threads may
 * tokenize with one tokenizer at once. */
typedef struct apr_tokenizer apr_tokenizer;

/* A streaming detokenizer: takes ids one at a time and returns the text
 * that is complete (see apr_detok_push). One per output stream. */
typedef struct apr_detok apr_detok;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
typedef enum apr_token_type {
    APR_TOKEN_UNDEFINED = 0,
    APR_TOKEN_NORMAL = 1,
    APR_TOKEN_UNKNOWN = 2,
    APR_TOKEN_CONTROL = 3,       /* <|im_start|>, <|endoftext|>: never plain text */
    APR_TOKEN_USER_DEFINED = 4,  /* added tokens: <tool_call>, <|fim_prefix|> */
    APR_TOKEN_UNUSED = 5,
    APR_TOKEN_BYTE = 6
} apr_token_type;

typedef enum apr_tokenize_flags {
    /* Recognise the text of control and user-defined tokens ("<|im_end|>")
     * and emit those tokens. Without it such text is tokenized as plain
     * text, so user input can never forge a control token. */
    APR_TOKENIZE_SPECIAL = 1,
    /* Put the BOS token first (fails with APR_ERR_UNSUPPORTED if the
     * vocabulary has none). */
    APR_TOKENIZE_ADD_BOS = 2
} apr_tokenize_flags;

typedef enum apr_detok_flags {
    /* Render control tokens as nothing instead of their text. */
    APR_DETOK_SKIP_CONTROL = 1
} apr_detok_flags;

/* Builds the tokenizer of source f: tokenizer.ggml.model must be "gpt2" (byte-level
 * BPE) and tokenizer.ggml.pre a split apr implements (qwen2, llama-bpe,
 * smollm, gpt-2 and their aliases); anything else is APR_ERR_UNSUPPORTED
 * naming the value. A missing key is APR_ERR_NOT_FOUND naming it; malformed
 * values APR_ERR_FORMAT. On success the caller frees *out with
 * apr_tokenizer_free; on failure *out is NULL. */
apr_status apr_tokenizer_from_source(const apr_source *f, apr_tokenizer **out);
void apr_tokenizer_free(apr_tokenizer *t);

/* Vocabulary size (ids are 0 .. n_vocab-1). */
int32_t apr_tokenizer_n_vocab(const apr_tokenizer *t);
/* Special ids, -1 when the vocabulary has none. eot is the end of a chat
 * turn (<|im_end|>, <|eot_id|>), from tokenizer.ggml.eot_token_id or found
 * by its text. */
int32_t apr_tokenizer_bos(const apr_tokenizer *t);
int32_t apr_tokenizer_eos(const apr_tokenizer *t);
int32_t apr_tokenizer_eot(const apr_tokenizer *t);
/* tokenizer.ggml.add_bos_token (when absent, 1 for Llama 3's split, else 0):
 * whether prompts for this model start with BOS. */
int apr_tokenizer_add_bos(const apr_tokenizer *t);
/* The tokenizer.ggml.pre value the tokenizer was built with ("qwen2"). */
const char *apr_tokenizer_pre(const apr_tokenizer *t);
/* The id of the token whose vocabulary text is exactly text[0..len), or -1. */
int32_t apr_tokenizer_find(const apr_tokenizer *t, const char *text, size_t len);

/* The token's type (apr_token_type), or -1 for an id out of range. */
int apr_token_get_type(const apr_tokenizer *t, int32_t id);
/* 1 for control and user-defined tokens (those APR_TOKENIZE_SPECIAL
 * recognises), 0 otherwise and for ids out of range. */
int apr_token_is_special(const apr_tokenizer *t, int32_t id);
/* 1 if generating the token ends generation: eos, eot, eom, and the control
 * tokens llama.cpp also treats so (<|endoftext|>, <|im_end|>, <|eot_id|>,
 * <|fim_pad|>, <|repo_name|>, <|file_sep|>, ...). */
int apr_token_is_eog(const apr_tokenizer *t, int32_t id);
/* The token's vocabulary text as stored in the file (byte-level BPE writes
 * a space as "Ġ"), NUL-terminated and owned by t. APR_ERR_RANGE naming the
 * id if it is out of range. */
apr_status apr_token_text(const apr_tokenizer *t, int32_t id, const char **text);
/* The bytes the token stands for (" hello" for "Ġhello"), owned by t. Not
 * NUL-terminated and possibly a fragment of a UTF-8 sequence. */
apr_status apr_token_piece(const apr_tokenizer *t, int32_t id, const char **bytes, size_t *len);

/* Tokenizes text[0..len) (flags: apr_tokenize_flags). Any bytes are
 * accepted: byte-level BPE encodes invalid UTF-8 byte by byte, so decoding
 * the ids gives the same bytes back. Writes up to cap ids and sets *n_out
 * to the number the whole text needs: if *n_out > cap, only the first cap
 * were written, so call again with a larger buffer (len + 1 ids always
 * suffice). The text is not normalized (no NFC), as in llama.cpp. Fails
 * with APR_ERR_RANGE for text over 2 GiB, APR_ERR_NOMEM, or
 * APR_ERR_CANCELLED on Ctrl+C. */
apr_status apr_tokenize(const apr_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids, size_t cap,
                        size_t *n_out);

/* Decodes n ids into buf as UTF-8 text (flags: apr_detok_flags): what a
 * detokenizer pushed each id in turn and then flushed returns. Invalid or
 * incomplete UTF-8 becomes U+FFFD. Writes up to cap bytes (no NUL) and sets
 * *n_out to the length of the whole text, as apr_tokenize does. An id out
 * of range fails with APR_ERR_RANGE naming it. */
apr_status apr_detokenize(const apr_tokenizer *t, const int32_t *ids, size_t n, int flags, char *buf, size_t cap,
                          size_t *n_out);

/* A detokenizer for t (which must outlive it); flags: apr_detok_flags.
 * Free with apr_detok_free. */
apr_status apr_detok_new(const apr_tokenizer *t, int flags, apr_detok **out);
void apr_detok_free(apr_detok *d);
/* Adds one id and points *text at the text that became complete (*len
 * bytes, possibly 0, NUL-terminated, valid until the next call on d). An
 * incomplete UTF-8 sequence at the end is held back until a later id
 * completes it; bytes that can never be valid UTF-8 come out as U+FFFD, one
 * per maximal invalid subpart (the Unicode Standard's section 3.9 practice).
 * An id out of range fails with APR_ERR_RANGE and changes nothing. */
apr_status apr_detok_push(apr_detok *d, int32_t id, const char **text, size_t *len);
/* Ends the stream: returns what is held back (an incomplete sequence, as
 * U+FFFD) and starts over. */
apr_status apr_detok_flush(apr_detok *d, const char **text, size_t *len);
/* Drops what is held back and starts over. */
void apr_detok_reset(apr_detok *d);

/* ===================================================================== */
/* Architectures (runtime/model/arch.c)                                  */
/* ===================================================================== */

/* The tensors a model of each architecture apr runs has, with shapes that
 * follow from its hyperparameters: the one description the loader binds
 * from, `apr verify` checks against and `apr synth` writes. */

/* What a tensor is for. */
typedef enum apr_tensor_role {
    APR_ROLE_EMBEDDING = 0,   /* token_embd: a row per token, looked up by id */
    APR_ROLE_NORM = 1,        /* an RMSNorm gain (vector) */
    APR_ROLE_WEIGHT = 2,      /* a linear layer's matrix */
    APR_ROLE_BIAS = 3,        /* a linear layer's bias (vector) */
    APR_ROLE_OUTPUT = 4       /* output.weight: hidden state to logits */
} apr_tensor_role;

/* The hyperparameters shapes are made of. */
typedef struct apr_arch_dims {
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
} apr_arch_dims;

/* One tensor an architecture has. */
typedef struct apr_expected_tensor {
    char name[64];            /* "blk.3.attn_q.weight" */
    const char *kind;         /* the name's stem: "token_embd", "attn_q", "ffn_down", "output" (static) */
    int layer;                /* its block, -1 outside the blocks */
    int role;                 /* apr_tensor_role */
    int n_dims;               /* 1 (a vector) or 2 (a matrix) */
    int64_t ne[2];            /* GGUF order: ne[0] the inputs (a row's length), ne[1] the outputs (1 for vectors) */
    int required;             /* 0: may be absent (output.weight: tied to token_embd; Llama's q/k/v biases) */
} apr_expected_tensor;

/* 1 if apr has a tensor table for general.architecture arch ("qwen2",
 * "llama"), else 0. */
int apr_arch_supported(const char *arch);
/* How many tensors arch has with n_layer blocks (optional ones included);
 * -1 for an architecture without a table or a negative n_layer. */
int64_t apr_arch_n_tensors(const char *arch, int n_layer);
/* Tensor i (0 <= i < apr_arch_n_tensors) of arch with the hyperparameters
 * d, in the order apr synth writes them: token_embd, each block's
 * tensors, output_norm, output. APR_ERR_UNSUPPORTED for an architecture
 * without a table, APR_ERR_RANGE for a bad i. */
apr_status apr_arch_tensor(const char *arch, const apr_arch_dims *d, int64_t i, apr_expected_tensor *out);
/* 1 if a tensor of this role may be of element type dtype: norms and
 * biases F32; matrices the types apr's products take. */
int apr_arch_type_allowed(int role, int dtype);
/* Those types as text for messages ("F32, F16, BF16, Q4_0, ..."); static. */
const char *apr_arch_types(int role);

/* ===================================================================== */
/* Models and inference contexts (runtime/model/)                        */
/* ===================================================================== */

/* A loaded model: hyperparameters from the file's metadata, the tokenizer,
 * and (unless vocab_only) the weights on the chosen device. Immutable after
 * load, so several contexts and threads may use one model. */
typedef struct apr_model apr_model;

typedef enum apr_device_kind {
    APR_DEVICE_AUTO = 0,  /* CUDA when a device is present, else the CPU */
    APR_DEVICE_CPU = 1,
    APR_DEVICE_CUDA = 2
} apr_device_kind;

typedef struct apr_model_params {
    int device;             /* apr_device_kind */
    int gpu_index;          /* which CUDA device (0) */
    int vocab_only;         /* load only the tokenizer and metadata */
    int n_threads;          /* CPU threads; 0 = all this process may use */
    uint64_t vram_budget;   /* bytes apr may allocate on the GPU; 0 = no cap */
} apr_model_params;

/* The hyperparameters, as read from the file (never hard-coded). */
typedef struct apr_model_info {
    const char *arch;       /* "qwen2", "llama" */
    const char *name;       /* general.name or "" */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
    int device;             /* apr_device_kind actually used */
    uint64_t weight_bytes;  /* bytes of weights on the device */
} apr_model_info;

/* Fills p with the defaults (AUTO device, all threads, no budget). */
void apr_model_params_default(apr_model_params *p);
/* Loads path. Fails with a message naming the file and, for missing
 * hyperparameters or tensors, the key or tensor name. The caller holds the
 * one reference to *out and releases it with apr_model_free. */
apr_status apr_model_load(const char *path, const apr_model_params *p, apr_model **out);
/* Runs every check apr_model_load makes, in the same code, without a
 * device: the file's structure, the architecture and hyperparameters, the
 * tokenizer, each tensor's presence, shape and type, the norms finite, the
 * vocabulary against token_embd. Nothing is uploaded or kept. APR_OK if
 * apr_model_load would get that far; otherwise the status and message it
 * would fail with (`apr verify` reports them). What only a device can
 * refuse (memory, the CUDA kernels' head sizes) is not checked. */
apr_status apr_model_validate(const char *path);
/* Takes another reference on m and returns it (NULL for NULL). Thread-safe. */
apr_model *apr_model_retain(apr_model *m);
/* Releases a reference: the model is freed with the last one. Contexts and
 * engines hold their own reference, so a model released before them stays
 * until they are freed, whatever the order. Thread-safe. */
void apr_model_free(apr_model *m);
void apr_model_get_info(const apr_model *m, apr_model_info *out);
/* The model's tokenizer, owned by the model. */
const struct apr_tokenizer *apr_model_tokenizer(const apr_model *m);
/* The model's own chat template (tokenizer.chat_template), or NULL. */
const char *apr_model_chat_template(const apr_model *m);

/* apr_model_load on a detached thread of its own (runtime/model/loader.c),
 * for an event loop that must not wait on a file. Nothing joins the thread,
 * so a load stuck in the kernel never keeps the process from exiting. */
typedef struct apr_loader apr_loader;
/* Starts loading path with p (both copied). *out, to free with
 * apr_loader_free, or NULL on failure: APR_ERR_NOMEM, APR_ERR_IO (no thread
 * or eventfd). */
apr_status apr_loader_start(const char *path, const apr_model_params *p, apr_loader **out);
/* An eventfd that becomes readable when the load has ended; owned by l.
 * -1 for NULL. */
int apr_loader_fd(const apr_loader *l);
/* After the load ended: moves the model to *out (the caller frees it with
 * apr_model_free) and returns APR_OK, or returns the load's failure with
 * its message (naming the file, as apr_model_load's). APR_ERR_BUSY while it
 * still loads, APR_ERR_INVALID when the result was taken before; *out is
 * NULL on every failure. */
apr_status apr_loader_take(apr_loader *l, apr_model **out);
/* Frees l (NULL is ignored). A load still running is given up: its thread
 * frees the model and the loader when the load ends. */
void apr_loader_free(apr_loader *l);

/* An inference context: the KV cache and scratch buffers for up to n_seq
 * sequences, allocated once here; decoding allocates nothing. The cache is
 * one pool of n_ctx token slots in blocks of 32 that the sequences draw
 * from as they grow: one sequence may hold all of it while the others hold
 * nothing. With prefix_cache, blocks whose 32 slots are written are kept,
 * keyed by their tokens and all the tokens before them, after their
 * sequence lets go of them (least recently used first to be reused), and
 * so is a sequence's partly filled last block, so a sequence that starts
 * the same way can take them instead of computing them again
 * (apr_context_seq_reuse). Not thread-safe: one thread drives a context. */
typedef struct apr_context apr_context;

typedef struct apr_context_params {
    int n_ctx;              /* token slots in the KV cache, all sequences together; 0 = the model's training
                               context, or under a VRAM budget as much of it as the budget leaves room for */
    int n_seq;              /* sequences decoded together (1) */
    int n_batch;            /* most tokens one apr_decode call may carry (512) */
    int kv_type;            /* apr_dtype of the KV cache: APR_F16 (default), APR_Q8_0 or APR_Q4_0 */
    int prefix_cache;       /* 1 (default): keep full blocks for reuse; 0: a block is freed with its sequence */
} apr_context_params;

void apr_context_params_default(apr_context_params *p);
/* A context for m, holding a reference on it (apr_model_retain) until
 * apr_context_free: the caller may release its own reference first
 * (p NULL: the defaults). APR_ERR_UNSUPPORTED, before anything is
 * allocated, when the model's backend cannot run its attention over a
 * cache of p->kv_type (the message says what it has); APR_ERR_NOMEM (or
 * the VRAM budget's message) when the cache and buffers do not fit. */
apr_status apr_context_new(apr_model *m, const apr_context_params *p, apr_context **out);
/* Frees the context and releases its reference on the model. */
void apr_context_free(apr_context *c);
int apr_context_n_ctx(const apr_context *c);
/* Tokens sequence seq holds in the cache (the next position to decode). */
int apr_context_seq_len(const apr_context *c, int seq);
/* Forgets sequence seq's tokens from position `from` on (0 = all of it).
 * Blocks other sequences share or the prefix cache keeps stay for them;
 * cutting inside a shared block copies it first, which fails with
 * APR_ERR_RANGE (the sequence unchanged) when no block is left. */
apr_status apr_context_seq_truncate(apr_context *c, int seq, int from);
/* Prefix reuse: given the n ids sequence seq is to hold from position 0
 * (it must hold their first apr_context_seq_len tokens already, usually
 * none), attaches the cached blocks that continue it, as far as whole
 * blocks of 32 match, then as much of a cached partly filled block (the
 * last one a sequence let go of) as agrees, leaving at least the last id
 * to decode, and writes the tokens attached to *n_reused. The caller then decodes ids
 * from position apr_context_seq_len on. On the CPU the logits are the same
 * bits as if every token had been decoded. APR_ERR_INVALID when seq holds
 * other tokens; 0 reused when the context was made without prefix_cache. */
apr_status apr_context_seq_reuse(apr_context *c, int seq, const int32_t *ids, int n, int *n_reused);

/* A batch of tokens for one forward pass. Token i goes to sequence seq[i]
 * at position pos[i] (which must be that sequence's next position: tokens
 * of a sequence appear in order). logits_out receives, for each token with
 * want_logits[i] != 0, in batch order, n_vocab float32 logits. seq may be
 * NULL (all sequence 0); pos may be NULL (each sequence's next positions);
 * want_logits may be NULL (only the last token of the batch). */
typedef struct apr_batch {
    int n;
    const int32_t *ids;
    const int32_t *pos;
    const int32_t *seq;
    const int8_t *want_logits;
} apr_batch;

/* Runs the model over the batch, appending its tokens' keys and values to
 * the cache, and writes the requested logits. Fails without changing the
 * cache on: an id outside [0, n_vocab) (APR_ERR_RANGE, naming it), a
 * sequence outside [0, n_seq) (APR_ERR_RANGE), a sequence full
 * (APR_ERR_RANGE: "context of N tokens is full"), a batch over n_batch or a
 * pos that is not its sequence's next position (APR_ERR_INVALID), non-finite
 * logits (APR_ERR_FORMAT: corrupt weights), or Ctrl+C (APR_ERR_CANCELLED).
 * An empty batch (n = 0) does nothing. On the CPU a token's logits are the
 * same bits whatever else shares its batch. */
apr_status apr_decode(apr_context *c, const apr_batch *b, float *logits_out);
/* apr_decode for greedy decoding: writes, for each token that wants logits,
 * the id of its largest logit (ties: the lowest id) to ids_out instead of
 * the logits. On the GPU the choice is made there and only the ids are
 * copied back (4 bytes a token instead of n_vocab floats). */
apr_status apr_decode_greedy(apr_context *c, const apr_batch *b, int32_t *ids_out);

/* ===================================================================== */
/* Sampling (runtime/model/sampler.c)                                    */
/* ===================================================================== */

/* A sampler turns one position's logits into a token id. It owns its
 * random state (seeded explicitly: the same seed and the same logits give
 * the same tokens) and a window of recent tokens for the penalties, and
 * allocates its scratch once, at creation, for n_vocab logits.
 *
 * The steps, in order (docs/lua-api.md "Sampling" says why this order):
 *  1. logit bias: added to the raw logits (-INFINITY bans a token);
 *  2. penalties over the tokens in the window: repetition as llama.cpp
 *     applies it (a positive logit is divided by repeat_penalty, a negative
 *     one multiplied), then OpenAI's frequency and presence penalties
 *     (logit -= count * frequency_penalty + (count > 0) * presence_penalty);
 *  3. temperature <= 0: the largest logit wins (ties: the lowest id), and
 *     steps 4-6 are skipped;
 *  4. logits divided by the temperature;
 *  5. top_k, then top_p over the renormalised survivors, then min_p
 *     (drop tokens below min_p times the best one's probability);
 *  6. one draw from the survivors' softmax. */
typedef struct apr_sampler apr_sampler;

typedef struct apr_sampler_params {
    float temperature;        /* <= 0: greedy (1 = the model's distribution) */
    int top_k;                /* keep the k most likely; 0 = all */
    float top_p;              /* keep the smallest set of mass >= top_p; 1 = off */
    float min_p;              /* drop p < min_p * p_max; 0 = off */
    float repeat_penalty;     /* 1 = off; > 1 discourages repeats */
    float presence_penalty;   /* 0 = off; OpenAI range -2..2 */
    float frequency_penalty;  /* 0 = off; OpenAI range -2..2 */
    int penalty_last_n;       /* tokens the penalty window holds (64); 0 = no penalties */
    uint64_t seed;            /* the random stream's seed */
} apr_sampler_params;

/* One entry of a top-N log-probability list. */
typedef struct apr_token_logprob {
    int32_t id;
    float logprob;            /* natural log */
} apr_token_logprob;

/* Fills p with the defaults: temperature 1, no top_k/top_p/min_p, no
 * penalties, a window of 64, seed 0. */
void apr_sampler_params_default(apr_sampler_params *p);
/* Makes a sampler for logits of n_vocab entries. Fails with APR_ERR_INVALID
 * for a parameter out of its range (naming it) and APR_ERR_NOMEM; *out is
 * then NULL. The caller frees it with apr_sampler_free. */
apr_status apr_sampler_new(int n_vocab, const apr_sampler_params *p, apr_sampler **out);
void apr_sampler_free(apr_sampler *s);
/* Empties the penalty window and restarts the random stream from the seed,
 * so a new generation with the same inputs repeats the previous one. */
void apr_sampler_reset(apr_sampler *s);
/* Replaces the logit bias with n (id, bias) pairs (n = 0 removes it). A bias
 * must be finite or -INFINITY. On failure (an id outside [0, n_vocab), a NaN
 * or +INFINITY bias: APR_ERR_RANGE naming it) the old bias stays. */
apr_status apr_sampler_set_logit_bias(apr_sampler *s, int n, const int32_t *ids, const float *bias);
/* Appends a token to the penalty window (the oldest falls out when full):
 * the prompt's tokens, or tokens chosen elsewhere. APR_ERR_RANGE for an id
 * outside [0, n_vocab). */
apr_status apr_sampler_accept(apr_sampler *s, int32_t id);
/* Picks a token from n_vocab logits (left unchanged), writes it to *out and
 * appends it to the penalty window. Fails with APR_ERR_FORMAT, naming the
 * token, when a logit is NaN or +INFINITY (the model's weights or
 * activations are not finite), and with APR_ERR_RANGE when the bias banned
 * every token; the window and random state are then unchanged. */
apr_status apr_sampler_sample(apr_sampler *s, const float *logits, int32_t *out);
/* Log-probabilities under the model's raw distribution: log_softmax of the
 * logits at temperature 1, before bias, penalties and filters (what
 * OpenAI's `logprobs` report). Writes the log-probability of token `chosen`
 * to *chosen_logprob (NULL to skip) and the n_top most likely tokens, most
 * likely first (ties: lower id first), to top[0..n_top). Allocates nothing.
 * APR_ERR_RANGE for chosen outside [0, n_vocab) or n_top outside
 * [0, n_vocab]; APR_ERR_FORMAT for a NaN or +INFINITY logit. */
apr_status apr_sampler_logprobs(const float *logits, int n_vocab, int32_t chosen, int n_top,
                                float *chosen_logprob, apr_token_logprob *top);

/* ===================================================================== */
/* HTTP parsing (runtime/server/http_parser.c)                           */
/* ===================================================================== */

/* An incremental, strict HTTP/1.1 request parser for one connection. It owns
 * the connection's input buffer: feed it bytes as they arrive, then call
 * apr_http_parser_next until it says it needs more. Each request is taken
 * whole out of the front of the buffer, so pipelined requests wait their
 * turn. Malformed or ambiguous input (bare CR/LF, NUL, obs-fold, bad
 * methods or versions, duplicate Content-Length, Content-Length with
 * Transfer-Encoding, unknown codings) is an error with the HTTP status to
 * answer; after an error the parser stays failed and the connection must be
 * closed. Not thread-safe: one connection, one thread. */
typedef struct apr_http_parser apr_http_parser;

typedef struct apr_http_limits {
    int max_head;          /* bytes of request line + header fields (16384): 414 / 431 over it */
    int max_headers;       /* header fields, and trailer fields (64): 431 over it */
    uint64_t max_body;     /* body bytes after de-chunking (8 MiB): 413 over it */
} apr_http_limits;

/* A header field as received, without surrounding whitespace. Not
 * NUL-terminated; points into the parser's buffer. */
typedef struct apr_http_header {
    const char *name;
    int name_len;
    const char *value;
    int value_len;
} apr_http_header;

/* What apr_http_parser_next found. Every pointer points into the parser and
 * stays valid until the next call on it (feed, next or free). */
typedef struct apr_http_request {
    const char *method;    /* "GET", case as sent */
    int method_len;
    const char *target;    /* "/v1/models?x=1" as sent */
    int target_len;
    int version;           /* 10 or 11 (HTTP/1.0, HTTP/1.1) */
    int n_headers;
    const apr_http_header *headers;  /* [n_headers], in order received */
    const char *body;      /* [body_len] bytes, de-chunked; complete only for APR_HTTP_REQUEST */
    uint64_t body_len;
    uint64_t content_length;  /* declared length (the decoded length for chunked bodies) */
    int chunked;           /* the body came chunked */
    int keep_alive;        /* the connection may carry another request after this one */
    int expect_continue;   /* the client waits for "100 Continue" before sending the body */
    uint64_t consumed;     /* bytes of input this request spanned (APR_HTTP_REQUEST) */
    int status;            /* APR_HTTP_ERROR: the HTTP status to answer (400, 413, 414, 417, 431, 501, 505) */
    const char *error;     /* APR_HTTP_ERROR: why, one line; NULL otherwise */
} apr_http_request;

/* apr_http_parser_next's results. */
typedef enum apr_http_result {
    APR_HTTP_NEED_MORE = 0,  /* nothing complete yet: feed more bytes */
    APR_HTTP_HEAD = 1,       /* the head is complete and the body is still arriving (once per request) */
    APR_HTTP_REQUEST = 2,    /* a whole request */
    APR_HTTP_ERROR = 3       /* malformed or over a limit: answer status, then close */
} apr_http_result;

/* Fills l with the defaults above. */
void apr_http_limits_default(apr_http_limits *l);
/* A parser with these limits (NULL: the defaults); NULL on a bad limit
 * (APR_ERR_INVALID) or out of memory. Free with apr_http_parser_free. */
apr_http_parser *apr_http_parser_new(const apr_http_limits *limits);
void apr_http_parser_free(apr_http_parser *p);
/* Appends n received bytes (copied). Fails with APR_ERR_BUSY, buffering
 * nothing, when the buffer would exceed what one request may need plus a
 * second request's head: the caller should stop reading until the current
 * request is answered. The previous request's view becomes invalid. */
apr_status apr_http_parser_feed(apr_http_parser *p, const void *data, size_t n);
/* Parses from the front of the buffer; returns an apr_http_result and, for
 * HEAD, REQUEST and ERROR, fills out. After a REQUEST the next call starts
 * on the bytes that follow it. */
int apr_http_parser_next(apr_http_parser *p, apr_http_request *out);
/* Bytes fed and not yet part of a returned request. */
size_t apr_http_parser_buffered(const apr_http_parser *p);
/* 1 if some bytes of a next request have arrived (for the header timeout). */
int apr_http_parser_started(const apr_http_parser *p);
/* Bytes apr_http_parser_feed accepts now (more is APR_ERR_BUSY): feed that
 * much, take the requests out, and feed the rest. */
size_t apr_http_parser_room(const apr_http_parser *p);
/* Bytes the parser's buffer holds allocated now. A buffer a large request
 * grew past 64 KiB is given back once the next call after that request
 * finds little else buffered. */
size_t apr_http_parser_capacity(const apr_http_parser *p);

/* ===================================================================== */
/* Engine (runtime/engine/engine.c)                                      */
/* ===================================================================== */

/* A scheduler thread that owns an inference context of n_seq sequences and
 * runs continuous batching over it: every step, all running requests
 * advance together in one apr_decode batch (the next token of those
 * generating, prompt chunks of those just admitted), a new request joins at
 * the next step, and a finished or cancelled one frees its sequence at
 * once. It is the one generation loop: sampling, penalties, stop tokens,
 * max_tokens and prefix reuse are applied here for every client (the
 * server, and apr.load(...):generate through an engine of one sequence).
 *
 * The KV cache is one pool of n_ctx slots that the running requests draw
 * from as they grow: one request may use all of it while others are idle,
 * and n_seq bounds how many run, not how long each is. When the pool runs
 * dry the newest running request is preempted (its blocks freed, it waits
 * again at the head of the queue and is recomputed when readmitted) rather
 * than anyone failing. With prefix_cache, a request first takes the cached
 * blocks that begin its prompt (a chat's earlier turns, a shared system
 * prompt) and computes only the rest.
 *
 * Requests go in through a locked queue (apr_engine_submit); results come
 * back as events (apr_engine_poll), and the file descriptor apr_engine_fd
 * becomes readable whenever some are waiting, so an event loop can watch
 * it without blocking (or apr_engine_wait blocks on it). Neither batching,
 * prefix reuse nor preemption changes results on the CPU: a sequence only
 * ever attends to its own tokens, and a token's logits are the same bits
 * however its prefix got into the cache. The functions below may be called
 * from any one thread (the event loop's); failures inside the engine travel
 * in the events. */
typedef struct apr_engine apr_engine;

typedef struct apr_engine_params {
    int n_seq;             /* sequences decoded together (4) */
    int n_ctx;             /* KV slots of all sequences together (0 = the model's training context) */
    int n_batch;           /* most tokens one step decodes (512; at least n_seq) */
    int max_queue;         /* requests that may wait for a free sequence (64) before submit is BUSY */
    int kv_type;           /* apr_dtype of the KV cache (0: the context's default) */
    int prefix_cache;      /* 1 (default): reuse cached blocks of earlier requests' prefixes; 0: compute every prompt */
    double zram_ratio;     /* > 0: KV blocks evicted from the device go to a compressed host pool of up to this many
                              times the cache's bytes and come back from it instead of being recomputed (needs
                              prefix_cache; docs/zram.md); 0 (default): off */
    int zram_algo;         /* apr_zram_algo of that pool (LZ4) */
} apr_engine_params;

/* A generation request. Everything is copied by apr_engine_submit. */
typedef struct apr_engine_request {
    const int32_t *prompt;    /* [n_prompt] token ids, n_prompt >= 1 */
    int n_prompt;
    int max_tokens;           /* generate at most this many (>= 1); fewer if the prompt and they pass n_ctx */
    apr_sampler_params sampling;  /* penalties see the prompt's last penalty_last_n tokens and the generated ones */
    int logprobs;             /* 1: each token event carries the token's log-probability */
    int top_logprobs;         /* and the n most likely alternatives, 0..20 (implies logprobs) */
    int ignore_eog;           /* 1: end-of-generation tokens (apr_token_is_eog) do not stop it */
    const int32_t *stop_ids;  /* [n_stop_ids] further tokens that stop it */
    int n_stop_ids;
    const int32_t *bias_ids;  /* [n_bias] logit bias (apr_sampler_set_logit_bias) */
    const float *bias;
    int n_bias;
} apr_engine_request;

typedef enum apr_finish_reason {
    APR_FINISH_NONE = 0,       /* the request goes on */
    APR_FINISH_STOP = 1,       /* it produced a stop token */
    APR_FINISH_LENGTH = 2,     /* max_tokens or the sequence's room reached */
    APR_FINISH_CANCELLED = 3,  /* apr_engine_cancel */
    APR_FINISH_ERROR = 4       /* status and message say why */
} apr_finish_reason;

enum { APR_ENGINE_MAX_TOP = 20 };

/* One result. A request yields token events, the last of which has finish
 * set; a request cancelled or failed ends with a final event whose token is
 * -1. Nothing follows an event with finish != APR_FINISH_NONE. */
typedef struct apr_engine_event {
    uint64_t id;              /* the request (apr_engine_submit's *id) */
    int32_t token;            /* the generated token, or -1 */
    int stop_token;           /* 1: token is the stop token that ended the request (not text) */
    float logprob;            /* the token's log-probability (when requested) */
    int n_top;                /* entries of top */
    apr_token_logprob top[20];  /* most likely alternatives, most likely first */
    int finish;               /* apr_finish_reason */
    int n_prompt;             /* the request's prompt tokens */
    int n_cached;             /* of them, those the prefix cache supplied (not computed) */
    int n_generated;          /* tokens generated so far */
    int status;               /* APR_FINISH_ERROR: the apr_status */
    char message[256];        /* APR_FINISH_ERROR: why, NUL-terminated */
} apr_engine_event;

/* Published after every step; a consistent snapshot. */
typedef struct apr_engine_stats {
    int n_seq, n_ctx, n_ctx_seq;        /* sequences, KV slots, the most one request may hold (n_ctx: the pool is shared) */
    int prefix_cache;                   /* 1 if prefix reuse is on */
    int running, queued;                /* requests decoding, and waiting (preempted ones included) */
    int kv_tokens_used, kv_tokens_total;  /* KV slots holding running requests' tokens, and all of them */
    int kv_blocks_used, kv_blocks_cached, kv_blocks_total;  /* blocks held by requests, kept by the prefix cache
                                                               only (reusable or evictable), and all of them */
    int batch_tokens_last;              /* tokens in the last step's batch */
    uint64_t steps, submitted, tokens_prompt, tokens_generated;  /* totals since creation (tokens_prompt: prompt
                                                                    tokens computed) */
    uint64_t tokens_reused;             /* tokens taken from the prefix cache instead of computed */
    uint64_t preemptions;               /* requests preempted for want of KV blocks */
} apr_engine_stats;

/* Fills p with the defaults above. */
void apr_engine_params_default(apr_engine_params *p);
/* Fills r with an empty prompt, max_tokens 16 and the sampler's defaults. */
void apr_engine_request_default(apr_engine_request *r);
/* Creates the context (n_seq sequences sharing n_ctx slots; n_ctx 0 as
 * for apr_context_new) for m and starts the thread. The engine holds a
 * reference on m until apr_engine_free, so the caller may release its own
 * first. Fails as apr_context_new does, with
 * APR_ERR_INVALID for bad parameters (naming them), APR_ERR_NOMEM or
 * APR_ERR_IO (no eventfd); *out is then NULL. */
apr_status apr_engine_new(apr_model *m, const apr_engine_params *p, apr_engine **out);
/* Stops the thread (requests in flight are dropped without events), frees
 * the context and everything else. To drain first, wait until every
 * submitted request has had its final event. */
void apr_engine_free(apr_engine *e);
/* The eventfd that is readable while events are waiting; owned by e. */
int apr_engine_fd(const apr_engine *e);
/* Queues a request and writes its id (> 0) to *id. Fails, queueing nothing
 * and *id = 0, with APR_ERR_INVALID for a bad request or sampling parameter
 * (naming it), APR_ERR_RANGE for a token id outside the vocabulary or a
 * prompt of n_ctx tokens or more, APR_ERR_BUSY
 * when max_queue requests already wait (answer 503 and retry later). */
apr_status apr_engine_submit(apr_engine *e, const apr_engine_request *r, uint64_t *id);
/* Asks for a request to stop: it ends with an APR_FINISH_CANCELLED event
 * (unless it finished first) and its sequence is freed at the next step.
 * Unknown or finished ids are ignored. */
apr_status apr_engine_cancel(apr_engine *e, uint64_t id);
/* Moves up to max waiting events to out, oldest first, and returns how many
 * (0 if none). Never blocks. */
int apr_engine_poll(apr_engine *e, apr_engine_event *out, int max);
/* Blocks until events are waiting (1), timeout_ms passes (0; -1 waits for
 * ever) or Ctrl+C is pressed (0, apr_interrupted() set). For callers
 * without an event loop; apr_engine_poll then takes the events. */
int apr_engine_wait(apr_engine *e, int timeout_ms);
/* A snapshot of the counters. */
void apr_engine_get_stats(apr_engine *e, apr_engine_stats *out);

/* ===================================================================== */
/* File locks (runtime/core/lockfile.c)                                  */
/* ===================================================================== */

/* Takes an exclusive flock(2) on path (created if missing; its folder must
 * exist), waiting up to timeout_s seconds (< 0: without limit; Ctrl+C stops
 * the wait), and writes the descriptor that holds it to *fd. Fails, *fd =
 * -1, with APR_ERR_BUSY when another process still holds it after the
 * timeout, APR_ERR_CANCELLED on Ctrl+C, APR_ERR_IO otherwise. */
apr_status apr_lockfile_acquire(const char *path, double timeout_s, int *fd);
/* Releases the lock and closes fd; accepts -1. */
void apr_lockfile_release(int fd);

/* ===================================================================== */
/* HTTP requests (runtime/net/fetch.c)                                   */
/* ===================================================================== */

/* One HTTP(S) request through libcurl, for small answers (a hub's JSON, a
 * HEAD's headers). Blocking; Ctrl+C (apr_interrupted) stops it. */
typedef struct apr_fetch_result {
    int http_status;          /* of the last response (0: none arrived) */
    char *headers;            /* that response's header lines, "\r\n"-separated, NUL-terminated */
    char *body;               /* its body, NUL-terminated (body_len bytes before the NUL) */
    size_t body_len;
    char *url;                /* the URL of the last response (after redirects followed) */
} apr_fetch_result;

/* Sends method ("GET", "HEAD") to url with the extra header lines in headers
 * ("Name: value", '\n'-separated; NULL for none), follows redirects when
 * follow is 1, and fills *out, whose strings the caller releases with
 * apr_fetch_result_free. An HTTP error status is not a failure: read
 * out->http_status. Fails, with *out empty, with APR_ERR_IO for a transport
 * failure (curl's message: no connection, timeout after timeout_s seconds,
 * TLS), APR_ERR_RANGE when the body exceeds max_body bytes,
 * APR_ERR_CANCELLED on Ctrl+C, APR_ERR_INVALID for a bad argument. */
apr_status apr_fetch_request(const char *method, const char *url, const char *headers, int follow,
                             size_t max_body, double timeout_s, apr_fetch_result *out);
/* Frees the strings of *r and empties it; accepts NULL and an empty result. */
void apr_fetch_result_free(apr_fetch_result *r);

/* ===================================================================== */
/* Downloads (runtime/net/download.c)                                    */
/* ===================================================================== */

/* One file of known size fetched over HTTP(S) into a local file on a thread
 * of its own: `connections` parallel ranged requests (HTTP/1.1, one TCP
 * connection each) into the file preallocated to its size, progress kept
 * in a journal (PATH.resume) so that a later download of the same URL into
 * the same path resumes after any interruption, a process kill included,
 * retries with backoff (Retry-After honoured) on 408/425/429/5xx, dropped
 * connections and stalls, a restart from byte 0 on one connection when the
 * server ignores ranges, and the SHA-256 computed while the bytes arrive.
 * Progress and the outcome come back as events (apr_download_poll); the
 * descriptor apr_download_fd is readable while some wait, so an event loop
 * watches it. Nothing calls back into the caller. */
typedef struct apr_download apr_download;

typedef struct apr_download_params {
    const char *url;          /* where the bytes are; redirects are followed */
    const char *path;         /* the file written (and PATH.resume beside it) */
    const char *headers;      /* extra request header lines, '\n'-separated, or NULL */
    int64_t size;             /* the file's exact size in bytes (required, >= 0) */
    const char *sha256;       /* 64 lower-case hex digits to compare at the end, or NULL */
    int connections;          /* parallel ranged requests, 1..64 (8) */
    int64_t chunk_bytes;      /* bytes per ranged request; 0: size / (8 x connections) within [1, 64] MiB */
    int max_retries;          /* failures in a row without a byte before a connection gives up (8) */
    double stall_seconds;     /* a connection receiving nothing this long is retried (30) */
    double connect_seconds;   /* connect timeout (30) */
    double progress_seconds;  /* between progress events (0.1) */
    double max_retry_wait;    /* the longest Retry-After honoured, seconds (300) */
} apr_download_params;

typedef enum apr_download_event_kind {
    APR_DOWNLOAD_PROGRESS = 0,  /* periodic: the counters below */
    APR_DOWNLOAD_RETRY = 1,     /* a request failed and is retried after `wait` s (message, http_status) */
    APR_DOWNLOAD_RESTART = 2,   /* the server ignored ranges: starting over from byte 0, one connection */
    APR_DOWNLOAD_DONE = 3,      /* the file is complete, synced, its sha256 computed (and matched) */
    APR_DOWNLOAD_FAILED = 4     /* reason, status, message; nothing follows */
} apr_download_event_kind;

typedef enum apr_download_reason {
    APR_DOWNLOAD_CANCELLED = 1, /* apr_download_cancel; the journal is kept for a resume */
    APR_DOWNLOAD_NETWORK = 2,   /* retries exhausted or a fatal transport error; journal kept */
    APR_DOWNLOAD_HTTP = 3,      /* an HTTP error that retrying cannot fix (401, 403, 404, ...); journal kept */
    APR_DOWNLOAD_CHANGED = 4,   /* the file changed on the server (ETag, size): file and journal removed */
    APR_DOWNLOAD_DIGEST = 5,    /* SHA-256 mismatch: file and journal removed; sha256 holds the digest */
    APR_DOWNLOAD_DISK = 6       /* the file could not be created, reserved or written (full disk) */
} apr_download_reason;

typedef struct apr_download_event {
    int kind;                 /* apr_download_event_kind */
    int64_t done;             /* bytes of the file written, resumed ones included */
    int64_t total;            /* the file's size */
    int64_t resumed;          /* bytes found on disk when the download started */
    int64_t received;         /* body bytes received and written by this download */
    int64_t hashed;           /* bytes from the start hashed so far */
    int active;               /* connections transferring now */
    int http_status;          /* RETRY/FAILED: the response's status, 0 for a transport failure */
    double wait;              /* RETRY: seconds until the retry */
    int reason;               /* FAILED: apr_download_reason */
    int status;               /* FAILED: an apr_status */
    char sha256[65];          /* DONE: the file's digest, 64 hex digits */
    char message[256];        /* RETRY/FAILED: why, one line */
} apr_download_event;

/* Fills p with the defaults above (size -1: must be set). */
void apr_download_params_default(apr_download_params *p);
/* Copies p and starts the download thread; *out to free with
 * apr_download_free. Fails, with *out NULL and nothing started, with
 * APR_ERR_INVALID for bad parameters (naming them) or APR_ERR_IO. Failures
 * after the start (the network, the disk) arrive as a FAILED event. */
apr_status apr_download_start(const apr_download_params *p, apr_download **out);
/* The eventfd that is readable while events wait; owned by d. */
int apr_download_fd(const apr_download *d);
/* Moves up to max waiting events to out, oldest first; returns how many.
 * Never blocks. After a DONE or FAILED event nothing more comes. */
int apr_download_poll(apr_download *d, apr_download_event *out, int max);
/* Asks the download to stop; it ends with a FAILED event, reason
 * APR_DOWNLOAD_CANCELLED, its journal saved. Returns at once. */
void apr_download_cancel(apr_download *d);
/* Stops the download if it runs (as cancel, then waits for the thread) and
 * frees d. Accepts NULL. */
void apr_download_free(apr_download *d);

/* ===================================================================== */
/* Tracing (runtime/trace/, docs/trace.md)                               */
/* ===================================================================== */

/* Where the time of a run goes: spans (named begin/end pairs) recorded by C
 * and Lua into per-thread ring buffers, and, on the GPU, kernels and copies
 * as CUPTI reports them. While tracing is off a span costs one predictable
 * branch. Timestamps are CLOCK_MONOTONIC nanoseconds (luv's uv.hrtime()).
 * Span names are interned: apr_trace_name gives the id that begin/end take.
 * Everything may be called from any thread; a thread's first record
 * reserves its ring (address space only: pages are used as records fill). */
typedef struct apr_trace_params {
    int64_t ring_records;     /* records per thread, rounded up to a power of 2 (0: 1M); when a
                                 ring is full its oldest records are overwritten (and counted) */
    int kernels;              /* 1: record GPU kernels, copies and memsets through CUPTI */
} apr_trace_params;

typedef struct apr_trace_info {
    int active;               /* between apr_trace_start and apr_trace_stop */
    int kernels;              /* 1 if CUPTI is recording (kernels asked for, CUDA build, library found) */
    char kernels_note[256];   /* when kernels were asked for and are not recorded: why */
    int n_threads;            /* threads that recorded in this trace */
    int64_t records;          /* span records kept in the rings */
    int64_t overwritten;      /* span records lost to full rings (oldest first) */
    int64_t gpu_records;      /* kernel, copy and memset records kept */
    int64_t gpu_dropped;      /* GPU records lost (CUPTI's buffers or apr's store full) */
    uint64_t start_ns;        /* apr_trace_now() at apr_trace_start */
    uint64_t stop_ns;         /* at apr_trace_stop (0 while active) */
} apr_trace_info;

/* Fills p with the defaults above. */
void apr_trace_params_default(apr_trace_params *p);
/* Starts a trace, discarding the records of an earlier one. With
 * p->kernels on a machine without CUPTI (no CUDA build, no libcupti, no
 * GPU) it still starts, records spans only, and says why in
 * apr_trace_info.kernels_note. Fails with APR_ERR_INVALID for bad params
 * (NULL means the defaults) or when a trace is already active. */
apr_status apr_trace_start(const apr_trace_params *p);
/* Stops recording and collects CUPTI's pending records (waiting for the
 * GPU work they describe). Records stay readable until the next start.
 * Does nothing when no trace is active. */
void apr_trace_stop(void);
/* 1 while a trace is active. */
int apr_trace_enabled(void);
/* The trace clock: CLOCK_MONOTONIC in nanoseconds. */
uint64_t apr_trace_now(void);
/* The id of a span name (interned for the life of the process; the same
 * name gives the same id). 0 for NULL, "" or when out of memory; names are
 * cut at 255 bytes. */
uint32_t apr_trace_name(const char *name);
/* Opens and closes a span of this thread. Spans nest: an end closes the
 * innermost open span of that name (and any opened inside it). No effect
 * while tracing is off or for id 0. */
void apr_trace_begin(uint32_t name);
void apr_trace_end(uint32_t name);
/* A whole span measured by the caller (start_ns from apr_trace_now or
 * uv.hrtime), on lane `lane` of this thread: spans that overlap without
 * nesting (concurrent HTTP requests of one event loop) go on different
 * lanes 1..200 (higher ones share lane 200); lane 0 is the thread's own
 * stack. */
void apr_trace_complete(uint32_t name, int lane, uint64_t start_ns, uint64_t dur_ns);
/* Names the calling thread in the trace ("main", "engine"); cut at 31 bytes. */
void apr_trace_thread_name(const char *name);
/* Fills out with the current trace's counters. */
void apr_trace_get_info(apr_trace_info *out);
/* Writes the last trace (stopped or not) as Chrome trace-event JSON to
 * path: one X event per span, kernel and copy, thread and process names as
 * M events, and an "otherData" object holding meta_json (a JSON object's
 * members without braces, or NULL) beside apr's own fields. Fails with
 * APR_ERR_IO naming the path; a partial file is removed. */
apr_status apr_trace_write_json(const char *path, const char *meta_json);

/* ===================================================================== */
/* Compressed page pools (runtime/zram/)                                 */
/* ===================================================================== */

/* A pool of fixed-size pages kept compressed in host memory, as Linux zram
 * keeps swapped pages (docs/zram.md). A page whose bytes are one repeated
 * 8-byte word (all zeros included) is kept as that word in its entry, with
 * no allocation; other pages are compressed (LZ4 or ZSTD) into size-class
 * slabs, or kept raw when they do not shrink. Every page is checked when
 * it comes back (its decoded size and an XXH3 hash taken on the way in), so
 * a corrupt page is an error for its caller, never wrong bytes. With a cap
 * on host bytes, a put that would pass it first evicts the least recently
 * used pages (put or got); their handles then name nothing. Thread-safe:
 * compression runs outside the pool's lock, so threads putting and getting
 * at once compress in parallel. */
typedef struct apr_zram apr_zram;

typedef enum apr_zram_algo {
    APR_ZRAM_LZ4 = 0,   /* LZ4 block (default): ~GB/s, modest ratios */
    APR_ZRAM_ZSTD = 1   /* ZSTD: slower, better ratios */
} apr_zram_algo;

typedef struct apr_zram_params {
    int algo;              /* apr_zram_algo */
    int level;             /* LZ4: acceleration (1 default, larger is faster); ZSTD: level (0 = 3) */
    uint64_t page_bytes;   /* bytes of every page: a multiple of 8, 8 .. 64 MiB (4096) */
    uint64_t max_bytes;    /* cap on host_bytes (0: none) */
} apr_zram_params;

/* A consistent snapshot of a pool's counters. */
typedef struct apr_zram_stats {
    uint64_t page_bytes, max_bytes;
    uint64_t pages;            /* pages held */
    uint64_t same_pages;       /* of which same-filled (no stored bytes) */
    uint64_t raw_pages;        /* of which stored as they are (they did not shrink) */
    uint64_t stored_bytes;     /* compressed or raw bytes of the pages held */
    uint64_t slab_bytes;       /* the slabs holding them (rounded up to size classes, free slots included) */
    uint64_t host_bytes;       /* slab_bytes + a 40-byte entry per page held: what max_bytes caps */
    double ratio;              /* pages * page_bytes / host_bytes (0 when empty) */
    uint64_t puts, gets, drops;  /* calls that succeeded, since creation */
    uint64_t same_hits;        /* puts of same-filled pages */
    uint64_t evictions;        /* pages evicted under the cap */
    uint64_t misses;           /* gets and drops of a handle that names no page */
    uint64_t corrupt;          /* gets that found a page's bytes corrupt */
    uint64_t compressed_in, compress_ns;      /* page bytes through the compressor, and its time */
    uint64_t decompressed_out, decompress_ns; /* page bytes out of the decompressor, and its time */
    double compress_gbs, decompress_gbs;      /* the two above as 1e9 bytes/s (0 before any) */
} apr_zram_stats;

/* Fills p with the defaults above (LZ4, 4 KiB pages, no cap). */
void apr_zram_params_default(apr_zram_params *p);
/* Makes an empty pool; *out is NULL on failure: APR_ERR_INVALID naming a
 * bad parameter (unknown algo, page size), APR_ERR_NOMEM. */
apr_status apr_zram_new(const apr_zram_params *p, apr_zram **out);
/* Frees the pool and every page in it; handles into it must not be used. */
void apr_zram_free(apr_zram *z);
/* Stores the page_bytes bytes at page and writes its handle (never 0) to
 * *handle. Fails with *handle = 0 and the pool as it was (but for pages
 * evicted trying to make room) with APR_ERR_NOMEM when the page cannot fit
 * under max_bytes even with every other page evicted, or malloc fails. */
apr_status apr_zram_put(apr_zram *z, const void *page, uint64_t *handle);
/* Writes the page of handle to the page_bytes bytes at page and marks it
 * recently used; the page stays in the pool. APR_ERR_NOT_FOUND when the
 * handle names no page (dropped, evicted, or never given out);
 * APR_ERR_FORMAT when its stored bytes are corrupt (page's bytes are then
 * unspecified; the page stays until dropped). */
apr_status apr_zram_get(apr_zram *z, uint64_t handle, void *page);
/* Stores a same-filled page known only by its word (found so on a GPU,
 * where the page itself never left): as apr_zram_put of a page of that
 * word repeated, without reading one. */
apr_status apr_zram_put_word(apr_zram *z, uint64_t word, uint64_t *handle);
/* 1 if handle names a same-filled page, its word then written to *word and
 * the page marked recently used (a get that reads no bytes); 0 otherwise
 * (another kind of page, or no page: apr_zram_get says which). */
int apr_zram_same_word(apr_zram *z, uint64_t handle, uint64_t *word);
/* Frees the page of handle. APR_ERR_NOT_FOUND when it names no page. */
apr_status apr_zram_drop(apr_zram *z, uint64_t handle);
/* 1 if handle names a page held now (it may be evicted the next moment by
 * another thread's put). */
int apr_zram_has(apr_zram *z, uint64_t handle);
void apr_zram_get_stats(apr_zram *z, apr_zram_stats *out);
/* "lz4", "zstd"; NULL for another number. */
const char *apr_zram_algo_name(int algo);

/* Classifies n_pages pages of page_bytes (a multiple of 8) at pages: same[i]
 * = 1 and words[i] = the word when page i is one repeated 8-byte word, else
 * 0 and 0 (either array may be NULL); *n_same (may be NULL) gets the count.
 * Runs on `threads` threads of the CPU pool (0: all). The CPU side of the
 * GPU's KV block classification; also what bench/zram_same.lua times. */
apr_status apr_zram_classify(const void *pages, uint64_t n_pages, uint64_t page_bytes, int threads, uint8_t *same,
                             uint64_t *words, uint64_t *n_same);
/* memcpy of n_pages pages split over threads as apr_zram_classify splits
 * them: the baseline the benchmark sets the check beside. */
apr_status apr_zram_copy_pages(void *dst, const void *src, uint64_t n_pages, uint64_t page_bytes, int threads);
/* For tests and benchmarks: 1 to check with AVX2 when the CPU has it (the
 * default), 0 for the scalar loop. Returns 1 if AVX2 is now in use. */
int apr_zram_simd(int enable);
/* Times the GPU's same-filled classification (kernels/zram.cu) on device
 * index over `bytes` of pages of page_bytes (a multiple of 16) that are all
 * same-filled (same_filled = 1: the whole of every page is read) or all
 * random (0: each page is left after its first 2 KiB). *out: page bytes
 * classified per second, best of five. Allocates bytes plus 9 bytes a page
 * for the duration; checks the kernel's verdict on every page
 * (APR_ERR_DEVICE if wrong). APR_ERR_DEVICE without a GPU or CUDA build. */
apr_status apr_device_zram_bandwidth(int index, uint64_t bytes, uint64_t page_bytes, int same_filled, double *out);

/* ===================================================================== */
/* KV blocks swapped to a zram pool (runtime/model/kvswap.c)             */
/* ===================================================================== */

/* With a pool attached, a block the prefix cache evicts from the device
 * goes to the pool (same-filled pages as their word, never copied off a
 * GPU; the others compressed), and apr_context_seq_reuse takes it back from
 * there, loaded into a free block, where the device no longer has it: a
 * preempted or released sequence continues without recomputing its prompt,
 * with the same bytes in its cache (docs/zram.md). */
typedef struct apr_kv_swap_stats {
    uint64_t blocks_out;       /* blocks copied out of the KV cache into the pool */
    uint64_t blocks_clean;     /* evictions of blocks the pool held already (restored ones): no copy */
    uint64_t blocks_in;        /* blocks loaded back from the pool instead of recomputed */
    uint64_t restore_failed;   /* blocks the pool had lost (evicted page, corrupt page): recomputed */
    uint64_t blocks_lost;      /* evicted blocks the pool could not take */
    uint64_t blocks_dropped;   /* blocks dropped, coldest first, to keep the pool under 90% of its cap */
    uint64_t blocks_held;      /* blocks in the pool now */
    uint64_t pages_same;       /* pages copied out as their word alone (same-filled) */
    uint64_t bytes_out, bytes_in;  /* page bytes copied off the device and back onto it */
    uint64_t out_ns, in_ns;    /* time the decoding thread spent storing and restoring blocks */
} apr_kv_swap_stats;

/* Bytes of one page of c's KV cache (one layer's keys or values of one
 * block): the page size a pool for apr_context_set_zram must have. */
uint64_t apr_context_kv_page_bytes(const apr_context *c);
/* Bytes of c's whole KV cache on its device (keys and values). */
uint64_t apr_context_kv_bytes(const apr_context *c);
/* Attaches pool to c (NULL detaches: the pool's pages of c are dropped).
 * The pool must outlive c or be detached first; one pool serves one
 * context. Allocates staging the device can reach (pinned host memory on a
 * GPU): 64 MiB, or two passes' worth of evicted blocks when that is more,
 * up to 512 MiB. APR_ERR_INVALID when the pool's page size is not
 * apr_context_kv_page_bytes or c has no prefix cache; APR_ERR_NOMEM. */
apr_status apr_context_set_zram(apr_context *c, apr_zram *pool);
/* The swap's counters since it was attached (zeros without one). */
void apr_context_get_swap_stats(const apr_context *c, apr_kv_swap_stats *out);
/* Copies the pages of blocks [first, first + n) of sequence seq (as
 * apr_context_seq_len counts them in blocks of 32 tokens, the last maybe
 * partly filled) to out, which holds n * 2 * n_layer pages: per block,
 * per layer, its keys' page then its values'. For measuring what the pool
 * gets (bench/zram_codec.lua). APR_ERR_RANGE for blocks the sequence does
 * not hold. */
apr_status apr_context_seq_kv_pages(apr_context *c, int seq, int first, int n, void *out);

/* The engine's pool (apr_engine_params.zram_ratio): 1 and both filled
 * (either may be NULL) when it has one, 0 (zeros) otherwise. The swap's
 * counters are those published after the last step; callable from any
 * thread. */
int apr_engine_get_zram(apr_engine *e, apr_zram_stats *pool, apr_kv_swap_stats *swap);

#ifdef __cplusplus
}
#endif

#endif /* APR_H */
