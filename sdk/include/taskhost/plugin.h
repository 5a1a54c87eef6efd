/*
 * taskhost plugin ABI — the only contract between the host and a plugin.
 *
 * Plain C. No C++ type, exception, allocator or thread-local crosses it.
 *
 * Versioning (PostgreSQL's magic block, SQLite's struct rule):
 *   - A plugin exports exactly one required symbol, TH_PLUGIN_ENTRY_SYMBOL,
 *     returning a pointer to a static th_plugin descriptor.
 *   - The host refuses a descriptor whose magic differs, whose abi_major
 *     differs from its own, or whose abi_minor is newer than its own.
 *   - Every struct begins with struct_size and only ever grows at the end.
 *     A reader touches a field only if struct_size covers it.
 *
 * Memory ownership, in one place:
 *   - th_str points into memory owned by the caller, valid for that call only.
 *   - Variable-length results are never returned as pointers: the callee
 *     streams them into a caller-supplied th_sink during the call.
 *   - Error messages are written by the callee into a caller-supplied
 *     th_error buffer (NUL-terminated, truncated to fit).
 *   - The th_host pointer and the th_host_api table are valid only during
 *     th_plugin.run and only on the thread that called it.
 *
 * Every host call takes plain bytes in and streams plain bytes out, so each is
 * implementable over a socket: a sandboxed child process receives a table of
 * broker stubs with the same signatures and the plugin cannot tell.
 *
 * What the sandbox (the default, `isolation: process`) makes true:
 *   - Each attempt runs in a fresh process that has run no other plugin:
 *     nothing survives an attempt in memory, and run may execute
 *     concurrently in several processes. Static initialisers run there
 *     too, never in the host.
 *   - The process starts with an empty environment and no descriptor but
 *     0-2 (/dev/null), the broker and the host's report pipe; it holds no
 *     credential of the host's.
 *   - No host call may be made from inside a th_sink or th_source callback:
 *     a callback runs while the broker is in the middle of the call that
 *     invoked it.
 *   - The only writable place is the attempt's /tmp (size-limited, removed
 *     after the attempt). There is no network, no /proc, no /etc beyond the
 *     loader's cache, and no device but /dev/null, /dev/zero, /dev/urandom.
 *   - After the library is loaded, a seccomp filter allows only the
 *     syscalls a multithreaded program needs: no socket, exec, fork,
 *     ptrace, new executable mapping or signal to another process. A
 *     refused syscall ends the attempt with an error naming it.
 *   - The attempt's limits (memory, cpu_time, open_files, tmp, processes:
 *     the schema's, else the host's) hold; exceeding memory, cpu_time or
 *     tmp ends the attempt with an error naming the limit.
 *   - A call's string arguments may total 1 MiB; a bigger one fails that
 *     call with TH_ERR_INVALID. progress() may be coalesced (its last value
 *     always arrives); should_stop() costs no round trip.
 */
#ifndef TASKHOST_PLUGIN_H
#define TASKHOST_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TH_ABI_MAJOR 1u
#define TH_ABI_MINOR 3u
#define TH_PLUGIN_MAGIC 0x54534b48u /* "TSKH" */
#define TH_PLUGIN_ENTRY_SYMBOL "taskhost_plugin_descriptor"

#if defined(__GNUC__)
#define TH_EXPORT __attribute__((visibility("default")))
#else
#define TH_EXPORT
#endif

/* Result codes of every ABI function. 0 is success. */
typedef enum th_code {
  TH_OK = 0,
  TH_ERR_INVALID = 1,       /* bad argument or malformed input */
  TH_ERR_NOT_SUPPORTED = 2, /* service not granted or operation unknown */
  TH_ERR_PERMISSION = 3,    /* outside the schema's capabilities */
  TH_ERR_NOT_FOUND = 4,
  TH_ERR_IO = 5,        /* network, disk or remote failure */
  TH_ERR_RETRYABLE = 6, /* run failed; a retry may succeed */
  TH_ERR_PERMANENT = 7, /* run failed; retrying will not help */
  TH_ERR_CANCELLED = 8, /* stopped because should_stop() said so */
  TH_ERR_INTERNAL = 9
} th_code;

typedef enum th_log_level {
  TH_LOG_DEBUG = 0,
  TH_LOG_INFO = 1,
  TH_LOG_WARN = 2,
  TH_LOG_ERROR = 3
} th_log_level;

/* A byte string owned by the caller; not NUL-terminated. */
typedef struct th_str {
  const char* data;
  size_t size;
} th_str;

/* A caller-supplied buffer the callee writes a NUL-terminated message into. */
typedef struct th_error {
  char* message;
  size_t capacity;
} th_error;

/* Streams bytes from callee to caller. write returns 0 to continue, non-zero
 * to abort the transfer (the callee then fails with TH_ERR_IO). */
typedef struct th_sink {
  void* user;
  int (*write)(void* user, const char* data, size_t size);
} th_sink;

/* Streams bytes from caller to callee. read returns the number of bytes put
 * into buf (0 at end of stream) or -1 on error. */
typedef struct th_source {
  void* user;
  int64_t (*read)(void* user, char* buf, size_t capacity);
} th_source;

/* Opaque to the plugin: identifies the run the host is serving. */
typedef struct th_host th_host;

/*
 * A brokered service operation (object storage, SFTP, SQL, HTTP).
 *   op       operation name, e.g. "get", "put", "list", "query"
 *   request  JSON object with the operation's arguments
 *   body_in  optional request body (NULL when the operation has none)
 *   body_out optional response body (NULL to discard it)
 *   reply    receives a JSON object describing the result
 * The host checks every call against the schema's capabilities.
 */
typedef int (*th_service_fn)(th_host* host, th_str op, th_str request, th_source* body_in,
                             th_sink* body_out, th_sink* reply, th_error* err);

/* The services the host offers one run. Entries for services the schema did
 * not grant are NULL: test with TH_HOST_HAS(api, field) before calling. */
typedef struct th_host_api {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;

  /* Always present. */
  void (*log)(th_host* host, th_log_level level, th_str message);
  int (*progress)(th_host* host, uint64_t done, uint64_t total, th_error* err);
  /* Streams the last stored checkpoint as JSON ("null" when none). */
  int (*checkpoint_get)(th_host* host, th_sink* out, th_error* err);
  /* Stores a checkpoint (any JSON value) durably before returning. */
  int (*checkpoint_set)(th_host* host, th_str json, th_error* err);
  /* Records a named event (e.g. "item.failed") with a JSON payload: durable
   * before the plugin's next call that records state or uses a service, and
   * when run returns (the host writes events in batches). */
  int (*emit)(th_host* host, th_str event, th_str json, th_error* err);
  /* 1 when a cancel or pause was requested: stop at the next safe point. */
  int (*should_stop)(th_host* host);
  /* Streams the run's validated parameters as a JSON object. */
  int (*params)(th_host* host, th_sink* out, th_error* err);
  /* Streams {"run_id","attempt","schema","schema_version"} as JSON. */
  int (*run_info)(th_host* host, th_sink* out, th_error* err);
  /* Sets the run's output (a JSON object); the last call wins. */
  int (*set_output)(th_host* host, th_str json, th_error* err);
  /* Attaches a file (e.g. a result CSV) to the run's output, read from body
   * to its end. Attaching a name again replaces that file. */
  int (*attach_file)(th_host* host, th_str name, th_str content_type, th_source* body,
                     th_error* err);

  /* Present only when the schema grants the service. */
  th_service_fn object_storage;
  th_service_fn sftp;
  th_service_fn db;
  th_service_fn http;
  /* Appended in ABI 1.1: OpenPGP decryption (capabilities.pgp). */
  th_service_fn pgp;
  /* Appended in ABI 1.2, always present: 1 when the run is a dry run, 0
   * otherwise. In a dry run the host refuses every write a service would
   * make (TH_ERR_PERMISSION, "dry run: ..."); reads work, so the plugin can
   * report what a real run would do. Its own output, events, progress,
   * checkpoints and attached files are still stored. */
  int (*dry_run)(th_host* host);
  /* Appended in ABI 1.3, always present: records one sample of a metric
   * the schema declares (`metrics:`), which the host exposes on /metrics.
   * labels is a JSON object giving each declared label one of its declared
   * values ("" or "{}" for a metric without labels). value is added to a
   * counter (an increment, not negative) or set on a gauge. An undeclared
   * metric, label or value is TH_ERR_INVALID and records nothing. Stored
   * before it returns; in a dry run nothing is recorded. */
  int (*metric)(th_host* host, th_str name, th_str labels, double value, th_error* err);
} th_host_api;

#define TH_HOST_HAS(api, field)                                                 \
  ((api)->struct_size >= offsetof(th_host_api, field) + sizeof((api)->field) && \
   (api)->field != NULL)

/* What a plugin exports. All fields are required. */
typedef struct th_plugin {
  uint32_t struct_size;
  uint32_t magic; /* TH_PLUGIN_MAGIC */
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* name;        /* static, NUL-terminated */
  const char* version;     /* the plugin's own semver */
  const char* description; /* one line */
  /* Runs the task once. Returns TH_OK, or an error code with a message in err.
   * TH_ERR_PERMANENT means "do not retry"; any other error may be retried. */
  int (*run)(const th_host_api* api, th_host* host, th_error* err);
} th_plugin;

typedef const th_plugin* (*th_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* TASKHOST_PLUGIN_H */
