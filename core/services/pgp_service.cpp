#include "services/pgp_service.hpp"

#include <openssl/evp.h>
#include <rnp/rnp.h>
#include <rnp/rnp_err.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>
#include <thread>

#include "common/sha256.hpp"
#include "services/byte_pipe.hpp"

namespace taskhost {
namespace {

constexpr size_t default_read = 1 << 20;  // a read's default size
constexpr size_t max_read = 8 << 20;      // and its largest

struct Stopped {};

// librnp's handles, freed whatever happens.
struct Ffi {
  rnp_ffi_t ffi = nullptr;
  Ffi() {
    if (rnp_ffi_create(&ffi, "GPG", "GPG") != RNP_SUCCESS)
      throw Error(ErrorKind::environment, "pgp: librnp could not start");
  }
  ~Ffi() { rnp_ffi_destroy(ffi); }
};
struct RnpString {
  char* s = nullptr;
  ~RnpString() { rnp_buffer_destroy(s); }
  std::string str() const { return s ? s : ""; }
};

// Imports keys; returns the fingerprints imported (primary and subkeys).
std::set<std::string> import_keys(rnp_ffi_t ffi, const std::string& text, uint32_t flags,
                                  const std::string& name) {
  rnp_input_t input = nullptr;
  rnp_input_from_memory(&input, reinterpret_cast<const uint8_t*>(text.data()), text.size(), false);
  RnpString results;
  const rnp_result_t rc = rnp_import_keys(ffi, input, flags, &results.s);
  rnp_input_destroy(input);
  if (rc != RNP_SUCCESS)
    throw Error(ErrorKind::environment,
                "pgp: key " + name + " from the host config is no OpenPGP key");
  std::set<std::string> fingerprints;
  const Json j = Json::parse(results.str(), nullptr, false);
  if (j.is_object() && j.contains("keys"))
    for (const auto& k : j["keys"])
      if (k.contains("fingerprint")) {
        // The import report writes fingerprints in lower case, key handles in upper.
        std::string f = k["fingerprint"];
        std::transform(f.begin(), f.end(), f.begin(),
                       [](unsigned char c) { return std::toupper(c); });
        fingerprints.insert(f);
      }
  return fingerprints;
}

}  // namespace

struct PgpService::Stream {
  std::string bucket, key, pgp_key, verify;
  std::string secret_key, passphrase, public_key;
  BytePipe cipher, plain;  // 1 MiB in flight between two threads
  std::thread fetcher, decryptor;
  std::exception_ptr fetch_failure;  // the object could not be read (its own error)
  std::string refusal;
  EVP_MD_CTX* sha = EVP_MD_CTX_new();
  uint64_t source_size = 0, plain_size = 0;
  std::string signer;
  bool finished = false;

  ~Stream() {
    cipher.abort();
    plain.abort();
    if (fetcher.joinable()) fetcher.join();
    if (decryptor.joinable()) decryptor.join();
    EVP_MD_CTX_free(sha);
    std::fill(secret_key.begin(), secret_key.end(), '\0');
    std::fill(passphrase.begin(), passphrase.end(), '\0');
  }

  std::string where() const { return bucket + "/" + key; }

  void decrypt() {
    try {
      Ffi f;
      import_keys(f.ffi, secret_key, RNP_LOAD_SAVE_SECRET_KEYS | RNP_LOAD_SAVE_PUBLIC_KEYS,
                  pgp_key);
      std::set<std::string> trusted;
      if (!verify.empty())
        trusted = import_keys(f.ffi, public_key, RNP_LOAD_SAVE_PUBLIC_KEYS, verify);
      rnp_ffi_set_pass_provider(
          f.ffi,
          [](rnp_ffi_t, void* ctx, rnp_key_handle_t, const char*, char buf[], size_t len) {
            const auto& p = *static_cast<const std::string*>(ctx);
            if (p.size() + 1 > len) return false;
            std::memcpy(buf, p.c_str(), p.size() + 1);
            return true;
          },
          &passphrase);
      rnp_input_t input = nullptr;
      rnp_output_t output = nullptr;
      rnp_input_from_callback(
          &input,
          [](void* ctx, void* buf, size_t len, size_t* n) {
            *n = static_cast<Stream*>(ctx)->cipher.read(static_cast<char*>(buf), len);
            return true;
          },
          nullptr, this);
      rnp_output_to_callback(
          &output,
          [](void* ctx, const void* buf, size_t len) {
            auto* s = static_cast<Stream*>(ctx);
            s->plain_size += len;
            return s->plain.write(static_cast<const char*>(buf), len);
          },
          nullptr, this);
      rnp_op_verify_t op = nullptr;
      rnp_op_verify_create(&op, f.ffi, input, output);
      const rnp_result_t rc = rnp_op_verify_execute(op);
      refusal = judge(op, rc, trusted);
      rnp_op_verify_destroy(op);
      rnp_input_destroy(input);
      rnp_output_destroy(output);
    } catch (const std::exception& e) {
      refusal = e.what();
    }
    // What remains of the ciphertext is not needed: let the fetcher end.
    cipher.abort();
    plain.close();
  }

  // Why the file is refused, or "" when it is good.
  std::string judge(rnp_op_verify_t op, rnp_result_t rc, const std::set<std::string>& trusted) {
    RnpString mode;
    bool protected_ok = false;
    rnp_op_verify_get_protection_info(op, &mode.s, nullptr, &protected_ok);
    size_t count = 0;
    rnp_op_verify_get_signature_count(op, &count);
    std::string sig_problem;
    for (size_t i = 0; i < count && sig_problem.empty(); ++i) {
      rnp_op_verify_signature_t sig = nullptr;
      rnp_op_verify_get_signature_at(op, i, &sig);
      const rnp_result_t status = rnp_op_verify_signature_get_status(sig);
      rnp_key_handle_t key = nullptr;
      RnpString fpr, primary, keyid;
      if (rnp_op_verify_signature_get_key(sig, &key) == RNP_SUCCESS && key) {
        rnp_key_get_fprint(key, &fpr.s);
        rnp_key_get_primary_fprint(key, &primary.s);
        rnp_key_handle_destroy(key);
      } else {
        rnp_signature_handle_t handle = nullptr;
        if (rnp_op_verify_signature_get_handle(sig, &handle) == RNP_SUCCESS) {
          rnp_signature_get_keyid(handle, &keyid.s);
          rnp_signature_handle_destroy(handle);
        }
      }
      if (status == RNP_ERROR_KEY_NOT_FOUND ||
          (status == RNP_SUCCESS && !verify.empty() && !trusted.count(fpr.str()) &&
           !trusted.count(primary.str())))
        sig_problem = "it is signed by key " + (keyid.s ? keyid.str() : fpr.str()) +
                      (verify.empty() ? ", which the host does not know" : ", not by " + verify);
      else if (status != RNP_SUCCESS)
        sig_problem = std::string("its signature does not verify (") +
                      rnp_result_to_string(status) + "): the file was altered after signing";
      else
        signer = primary.s ? primary.str() : fpr.str();
    }
    if (mode.str() == "none" || mode.str().empty())
      return rc == RNP_SUCCESS ? "it is not encrypted"
                               : std::string("it is not an OpenPGP message it can open (") +
                                     rnp_result_to_string(rc) + ")";
    if (!sig_problem.empty()) return sig_problem;
    if (rc != RNP_SUCCESS)
      return std::string("it cannot be decrypted with key ") + pgp_key + " (" +
             rnp_result_to_string(rc) + "): encrypted to another key, or altered";
    if (!protected_ok) return "its integrity check failed or is missing: the file may be altered";
    if (!verify.empty() && count == 0) return "it is not signed, and " + verify + " must sign it";
    return "";
  }
};

PgpService::PgpService(std::string schema, std::vector<PgpGrant> grants, std::vector<S3Grant> s3,
                       const HostConfig& config, ServiceAudit audit)
    : schema_(std::move(schema)),
      grants_(std::move(grants)),
      s3_(std::move(s3)),
      config_(config),
      audit_(std::move(audit)) {}

PgpService::~PgpService() = default;

Json PgpService::call(const std::string& op, const Json& request, const ByteSource&,
                      const ByteSink& out) {
  if (op == "open") return open(request);
  if (op == "read") return read(request, out);
  throw Error(ErrorKind::invalid, "pgp: unknown operation '" + op + "' (open, read)");
}

Json PgpService::open(const Json& request) {
  stream_.reset();
  const std::string& name = string_field(request, "pgp", "pgp_key");
  auto s = std::make_unique<Stream>();
  s->bucket = string_field(request, "pgp", "bucket");
  s->key = string_field(request, "pgp", "key");
  s->pgp_key = name;
  ServiceCall record{"pgp", "open", s->where() + " with " + name, 0, "ok"};
  auto grant = std::find_if(grants_.begin(), grants_.end(),
                            [&](const PgpGrant& g) { return g.key == name; });
  return audited(audit_, record, [&] {
    if (grant == grants_.end()) {
      std::string granted;
      for (const auto& g : grants_) granted += (granted.empty() ? "" : ", ") + g.key;
      throw not_granted(schema_, "pgp", "key " + name, granted, "no pgp grant");
    }
    s->verify = grant->verify;
    auto secret = config_.pgp.find(name);
    if (secret == config_.pgp.end() || !secret->second.secret_key)
      throw Error(ErrorKind::environment,
                  "pgp: the host config has no secret key " + name + " (pgp." + name + ")");
    s->secret_key = secret->second.secret_key->resolve();
    if (secret->second.passphrase) s->passphrase = secret->second.passphrase->resolve();
    if (!s->verify.empty()) {
      auto pub = config_.pgp.find(s->verify);
      if (pub == config_.pgp.end() || !pub->second.public_key)
        throw Error(ErrorKind::environment, "pgp: the host config has no public key " + s->verify +
                                                " (pgp." + s->verify + ")");
      s->public_key = pub->second.public_key->resolve();
    }
    EVP_DigestInit_ex(s->sha, EVP_sha256(), nullptr);
    Stream* raw = s.get();
    // The object is read through the schema's own s3 grants (checked and
    // audited there), by a service of this stream's own: its thread never
    // shares one with the plugin's calls.
    raw->fetcher = std::thread([raw, this] {
      try {
        ObjectStorageService storage(schema_, s3_, config_, audit_);
        storage.call(
            "get", {{"bucket", raw->bucket}, {"key", raw->key}},
            [](char*, size_t) { return size_t{0}; },
            [raw](const char* data, size_t n) {
              EVP_DigestUpdate(raw->sha, data, n);
              raw->source_size += n;
              if (!raw->cipher.write(data, n)) throw Stopped{};
            });
      } catch (const Stopped&) {
        // the decryptor needs no more
      } catch (...) {
        raw->fetch_failure = std::current_exception();
      }
      raw->cipher.close();
    });
    raw->decryptor = std::thread([raw] { raw->decrypt(); });
    stream_ = std::move(s);
    return Json::object();
  });
}

Json PgpService::read(const Json& request, const ByteSink& out) {
  if (!stream_) throw Error(ErrorKind::invalid, "pgp: read before open");
  size_t max = default_read;
  if (auto it = request.find("max"); it != request.end()) {
    if (!it->is_number_unsigned() || *it == 0 || *it > max_read)
      throw Error(ErrorKind::invalid, "pgp: 'max' must be from 1 to " + std::to_string(max_read));
    max = *it;
  }
  std::string chunk(max, '\0');
  size_t filled = 0;
  for (size_t n;
       filled < max && (n = stream_->plain.read(chunk.data() + filled, max - filled)) > 0;)
    filled += n;
  // The end (and the verdict) comes with an empty read, so that a plugin
  // reading until "" never takes unverified bytes for the last ones.
  if (filled > 0) {
    out(chunk.data(), filled);
    return {{"eof", false}};
  }

  Stream& s = *stream_;
  s.fetcher.join();
  s.decryptor.join();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(s.sha, digest, &len);
  ServiceCall record{"pgp", "decrypt", s.where() + " with " + s.pgp_key, s.source_size, "ok"};
  Json reply = {
      {"eof", true},
      {"size", s.plain_size},
      {"source_size", s.source_size},
      {"source_sha256", hex_lower(std::string_view(reinterpret_cast<char*>(digest), len))},
      {"signer", s.signer.empty() ? Json() : Json(s.signer)},
      {"verified", !s.verify.empty()}};
  const std::string refusal = s.refusal;
  const std::string where = s.where();
  const std::exception_ptr fetch_failure = s.fetch_failure;
  stream_.reset();
  return audited(audit_, record, [&] {
    if (fetch_failure) std::rethrow_exception(fetch_failure);
    if (!refusal.empty()) throw Error(ErrorKind::invalid, "pgp: " + where + " refused: " + refusal);
    return reply;
  });
}

}  // namespace taskhost
