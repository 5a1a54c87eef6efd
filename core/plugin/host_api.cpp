#include "plugin/host_api.hpp"

#include <algorithm>
#include <cstring>
#include <exception>

#include "common/error.hpp"
#include "common/json_input.hpp"

namespace taskhost {
namespace {

HostServices& services(th_host* h) { return *reinterpret_cast<HostServices*>(h); }
std::string_view view(th_str s) { return {s.data, s.size}; }

void write_error(th_error* err, const char* message) {
  if (err == nullptr || err->message == nullptr || err->capacity == 0) return;
  size_t n = std::min(std::strlen(message), err->capacity - 1);
  std::memcpy(err->message, message, n);
  err->message[n] = '\0';
}

// Runs f, turning any exception into an ABI code plus message.
template <typename F>
int guarded(th_error* err, F&& f) noexcept {
  try {
    f();
    return TH_OK;
  } catch (const Error& e) {
    write_error(err, e.what());
    switch (e.kind()) {
      case ErrorKind::invalid:
        return TH_ERR_INVALID;
      case ErrorKind::conflict:
        return TH_ERR_CANCELLED;  // the run was taken from this attempt
      case ErrorKind::not_found:
        return TH_ERR_NOT_FOUND;
      case ErrorKind::refused:
        return TH_ERR_PERMISSION;
      default:
        return TH_ERR_IO;
    }
  } catch (const std::exception& e) {
    write_error(err, e.what());
    return TH_ERR_INTERNAL;
  } catch (...) {
    write_error(err, "unknown host error");
    return TH_ERR_INTERNAL;
  }
}

int stream(th_sink* out, const std::string& bytes) {
  if (out == nullptr || out->write == nullptr) throw Error(ErrorKind::invalid, "no sink given");
  if (out->write(out->user, bytes.data(), bytes.size()) != 0)
    throw Error(ErrorKind::environment, "the plugin's sink aborted the transfer");
  return TH_OK;
}

// A plugin's source and sink as the host's streaming callbacks.
ByteSource source_of(th_source* in) {
  return [in](char* buf, size_t cap) -> size_t {
    if (in == nullptr || in->read == nullptr) throw Error(ErrorKind::invalid, "no body given");
    int64_t n = in->read(in->user, buf, cap);
    if (n < 0 || static_cast<size_t>(n) > cap)
      throw Error(ErrorKind::environment, "the plugin's source failed");
    return static_cast<size_t>(n);
  };
}

// Reads a plugin's source to its end, refusing more than a run may attach.
std::string drain(th_source* body) {
  constexpr size_t limit = 64u << 20;
  ByteSource in = source_of(body);
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = in(buf, sizeof buf)) > 0;) {
    out.append(buf, n);
    if (out.size() > limit)
      throw Error(ErrorKind::invalid, "an attached file may be at most 64 MiB; use object storage");
  }
  return out;
}
ByteSink sink_of(th_sink* out) {
  return [out](const char* data, size_t n) {
    if (out == nullptr || out->write == nullptr) return;  // the body is discarded
    if (out->write(out->user, data, n) != 0)
      throw Error(ErrorKind::environment, "the plugin's sink aborted the transfer");
  };
}

using ServiceMethod = nlohmann::json (HostServices::*)(const std::string&, const nlohmann::json&,
                                                       const ByteSource&, const ByteSink&);

// One service operation across the ABI: JSON in, JSON reply out, bodies
// streamed. A body the plugin does not give is an empty one.
int service_call(th_host* h, th_str op, th_str request, th_source* in, th_sink* out, th_sink* reply,
                 th_error* err, ServiceMethod method) {
  return guarded(err, [&] {
    auto req = parse_json_input(view(request), "the request");
    ByteSource source = in ? source_of(in) : ByteSource([](char*, size_t) { return size_t{0}; });
    stream(reply, (services(h).*method)(std::string(view(op)), req, source, sink_of(out)).dump());
  });
}

}  // namespace

std::unique_ptr<ObjectFile> HostServices::object_file(const nlohmann::json&) { return nullptr; }

nlohmann::json HostServices::pgp(const std::string&, const nlohmann::json&, const ByteSource&,
                                 const ByteSink&) {
  throw Error(ErrorKind::invalid, "this host offers no OpenPGP service");
}

void HostServices::metric(std::string_view, std::string_view, double) {
  throw Error(ErrorKind::invalid, "this host records no plugin metrics");
}

th_host_api make_host_api(const GrantedServices& granted) {
  th_host_api api{};
  api.struct_size = sizeof(th_host_api);
  api.abi_major = TH_ABI_MAJOR;
  api.abi_minor = TH_ABI_MINOR;
  api.log = [](th_host* h, th_log_level level, th_str message) {
    try {
      services(h).log(level, view(message));
    } catch (...) {
      // Logging must never fail a run.
    }
  };
  api.progress = [](th_host* h, uint64_t done, uint64_t total, th_error* err) {
    return guarded(err, [&] { services(h).progress(done, total); });
  };
  api.checkpoint_get = [](th_host* h, th_sink* out, th_error* err) {
    return guarded(err, [&] { stream(out, services(h).checkpoint_get()); });
  };
  api.checkpoint_set = [](th_host* h, th_str json, th_error* err) {
    return guarded(err, [&] { services(h).checkpoint_set(view(json)); });
  };
  api.emit = [](th_host* h, th_str event, th_str json, th_error* err) {
    return guarded(err, [&] { services(h).emit(view(event), view(json)); });
  };
  api.should_stop = [](th_host* h) {
    try {
      return services(h).should_stop() ? 1 : 0;
    } catch (...) {
      return 1;  // when the host cannot tell, stopping is the safe answer
    }
  };
  api.params = [](th_host* h, th_sink* out, th_error* err) {
    return guarded(err, [&] { stream(out, services(h).params()); });
  };
  api.run_info = [](th_host* h, th_sink* out, th_error* err) {
    return guarded(err, [&] { stream(out, services(h).run_info()); });
  };
  api.set_output = [](th_host* h, th_str json, th_error* err) {
    return guarded(err, [&] { services(h).set_output(view(json)); });
  };
  api.attach_file = [](th_host* h, th_str name, th_str content_type, th_source* body,
                       th_error* err) {
    return guarded(err,
                   [&] { services(h).attach_file(view(name), view(content_type), drain(body)); });
  };
  api.dry_run = [](th_host* h) {
    try {
      return services(h).dry_run() ? 1 : 0;
    } catch (...) {
      return 1;  // when the host cannot tell, a dry run is the safe answer
    }
  };
  api.metric = [](th_host* h, th_str name, th_str labels, double value, th_error* err) {
    return guarded(err, [&] { services(h).metric(view(name), view(labels), value); });
  };
  if (granted.object_storage)
    api.object_storage = [](th_host* h, th_str op, th_str request, th_source* in, th_sink* out,
                            th_sink* reply, th_error* err) {
      return service_call(h, op, request, in, out, reply, err, &HostServices::object_storage);
    };
  if (granted.sftp)
    api.sftp = [](th_host* h, th_str op, th_str request, th_source* in, th_sink* out,
                  th_sink* reply, th_error* err) {
      return service_call(h, op, request, in, out, reply, err, &HostServices::sftp);
    };
  if (granted.http)
    api.http = [](th_host* h, th_str op, th_str request, th_source* in, th_sink* out,
                  th_sink* reply, th_error* err) {
      return service_call(h, op, request, in, out, reply, err, &HostServices::http);
    };
  if (granted.db)
    api.db = [](th_host* h, th_str op, th_str request, th_source* in, th_sink* out, th_sink* reply,
                th_error* err) {
      return service_call(h, op, request, in, out, reply, err, &HostServices::db);
    };
  if (granted.pgp)
    api.pgp = [](th_host* h, th_str op, th_str request, th_source* in, th_sink* out, th_sink* reply,
                 th_error* err) {
      return service_call(h, op, request, in, out, reply, err, &HostServices::pgp);
    };
  return api;
}

}  // namespace taskhost
