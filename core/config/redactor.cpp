#include "config/redactor.hpp"

#include <libpq-fe.h>

#include <algorithm>

#include "common/error.hpp"

namespace taskhost {
namespace {

constexpr size_t min_secret_bytes = 8;

// The password a libpq connection string (URL or key=value) holds.
std::string password_in(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (err) PQfreemem(err);
  std::string out;
  for (auto* o = opts; o && o->keyword; ++o)
    if (std::string_view(o->keyword) == "password" && o->val) out = o->val;
  if (opts) PQconninfoFree(opts);
  return out;
}

}  // namespace

Redactor::Redactor(const HostConfig& config) {
  auto add = [&](const SecretRef* ref) {
    if (!ref || (!ref->env && !ref->file)) return;  // names no value
    try {
      std::string v = ref->resolve();
      if (v.size() >= min_secret_bytes) secrets_.push_back(std::move(v));
    } catch (const Error&) {
      // Unset here: then no run on this host can have read it either.
    }
  };
  auto add_opt = [&](const std::optional<SecretRef>& ref) { add(ref ? &*ref : nullptr); };
  for (const auto& [_, b] : config.s3) {
    add(&b.access_key_id);
    add(&b.secret_access_key);
    add_opt(b.session_token);
  }
  for (const auto& [_, c] : config.http_credentials) {
    if (c.kind == HttpCredentialConfig::Kind::oauth2) {
      add(&c.client_secret);
    } else {
      add(&c.secret);
    }
  }
  for (const auto& [_, k] : config.pgp) {
    add_opt(k.secret_key);
    add_opt(k.passphrase);
  }
  for (const auto& [_, d] : config.databases) {
    add(&d.url);
    add_opt(d.role_secret);
    try {
      if (auto p = password_in(d.url.resolve()); p.size() >= min_secret_bytes)
        secrets_.push_back(p);
    } catch (const Error&) {
    }
  }
  add_opt(config.host_key);
  for (const auto& k : config.previous_host_keys) add(&k);
  add_opt(config.api_pepper);
  std::sort(secrets_.begin(), secrets_.end(),
            [](const auto& a, const auto& b) { return a.size() > b.size(); });
  secrets_.erase(std::unique(secrets_.begin(), secrets_.end()), secrets_.end());
}

std::string Redactor::redact(std::string_view text) const {
  std::string out(text);
  for (const auto& s : secrets_)
    for (size_t at = out.find(s); at != std::string::npos; at = out.find(s, at + 10))
      out.replace(at, s.size(), "[redacted]");
  return out;
}

}  // namespace taskhost
